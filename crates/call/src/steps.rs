//! The IO behind each [`Step`] the call core asks for: the pinned-key check in the home
//! directory, the media session before and while it runs, gathering through `peerline-nat`, and
//! the reconnect that takes a call over on a new supernode connection. Each step is bounded in
//! time; its error is kept for the core's [`Failure::Op`](peerline_call_core::Failure).

use std::sync::atomic::Ordering;

use peerline_call_core::{Call, OpId, OpResult, PeerClaim, Side, Step};
use peerline_client::{Client, ClientError};
use peerline_media::{AudioSink, AudioSource, Control, MediaError};
use peerline_nat::{CallSocket, Servers, TurnCredentials, gather, public_ip, public_ip_of};
use peerline_wire::{Reply, Request, SdpRole};
use tokio::sync::oneshot;
use tracing::{info, warn};

use crate::live::{Live, MediaSlot, refusal};
use crate::{CallError, sign};

/// The servers a call gathers against, from the supernode connection. With `turn`, asks the
/// supernode for fresh TURN credentials (an error is kept: without `relay_only` a call goes on
/// without relays) and builds the TLS settings for `turns:` relays; a STUN probe of the public
/// address needs neither.
pub(crate) async fn servers(client: &Client, turn: bool) -> Result<Servers, CallError> {
    let supernode = client
        .supernode_host_port()
        .ok_or_else(|| CallError::Io(std::io::Error::other("the supernode URL has no host")))?;
    let (turn, relay_tls) = if turn {
        let credentials = turn_credentials(client).await.map_err(|e| e.to_string());
        let tls = client.relay_tls_config().unwrap_or_else(|e| {
            warn!(error = %e, "no TLS settings for turns: relays");
            None
        });
        (credentials, tls)
    } else {
        (Err("not asked for".to_owned()), None)
    };
    Ok(Servers {
        supernode,
        stun_port: client.stun_server().map(|(_, port)| port),
        turn,
        relay_tls,
    })
}

/// Short-lived TURN credentials and relay URLs from the supernode (empty URLs when it has no
/// relay configured).
pub(crate) async fn turn_credentials(client: &Client) -> Result<TurnCredentials, ClientError> {
    match client.request(Request::TurnCredentials).await? {
        Reply::TurnCredentials { username, password, ttl_secs, urls } => {
            Ok(TurnCredentials { username, password, ttl_secs, urls })
        }
        other => Err(ClientError::UnexpectedReply(format!("{other:?}"))),
    }
}

impl<Src, Snk> Live<'_, Src, Snk>
where
    Src: AudioSource + 'static,
    Snk: AudioSink + 'static,
{
    /// Carries out one step, bounded in time.
    pub(crate) async fn run_step(&mut self, op: OpId, step: Step, call: &Call) -> OpResult {
        let policy = call.config();
        let (limit, on_timeout) = match step {
            Step::Resume => (policy.resume_try, OpResult::Broken),
            _ => (policy.step_timeout, OpResult::Failed),
        };
        match tokio::time::timeout(limit, self.step_inner(step, call)).await {
            Ok(Ok(result)) => result,
            Ok(Err(e)) => {
                let result = match &e {
                    CallError::Client(e) => refusal(e),
                    _ => OpResult::Failed,
                };
                self.errors.insert(op, e);
                result
            }
            Err(_) => {
                warn!(limit = ?limit, "a call step took too long");
                self.errors.insert(op, ClientError::TimedOut.into());
                on_timeout
            }
        }
    }

    async fn step_inner(&mut self, step: Step, call: &Call) -> Result<OpResult, CallError> {
        match step {
            Step::CheckKey(claim) => self.check_key(&claim, call),
            Step::AcceptAnswer(sdp) => {
                self.idle_media()?.accept_answer(&sdp)?;
                Ok(OpResult::Done)
            }
            Step::AcceptOffer(sdp) => {
                let media = self.idle_media()?;
                let answer = media.accept_offer(&sdp)?;
                let fingerprint = media.local_dtls_fingerprint().to_owned();
                let call_id = call.call_id().to_owned();
                let peer = call.peer().to_owned();
                let signature =
                    sign(&self.key, &call_id, SdpRole::Answer, &self.me, &peer, &fingerprint);
                Ok(OpResult::Signed { sdp: answer, signature })
            }
            Step::Gather => {
                let servers = servers(self.client, true).await?;
                let gathered = gather(&servers, self.options.relay_only).await?;
                let media = self.idle_media()?;
                let mut lines = Vec::new();
                for candidate in &gathered.candidates {
                    lines.extend(media.add_local_candidate(*candidate)?);
                }
                let public_ip = public_ip_of(&gathered.candidates);
                self.gathered = gathered;
                Ok(OpResult::Gathered { lines, public_ip })
            }
            Step::Probe { public_address } => {
                let relay_died =
                    self.gathered.relays_alive.iter().any(|alive| !alive.load(Ordering::Relaxed));
                let public_ip = if public_address {
                    public_ip(&servers(self.client, false).await?).await
                } else {
                    None
                };
                if public_ip.is_some() {
                    tracing::debug!(?public_ip, "this side's public address now");
                }
                Ok(OpResult::Probed { public_ip, relay_died })
            }
            Step::Regather => self.regather().await,
            Step::RestartIce => {
                info!("restarting ICE");
                Ok(OpResult::Sdp(self.ask(Control::RestartIce).await?))
            }
            Step::AcceptRestartOffer(offer) => {
                let answer = self.ask(|tx| Control::AcceptRestartOffer(offer, tx)).await?;
                Ok(OpResult::Sdp(answer))
            }
            Step::AcceptRestartAnswer(answer) => {
                self.ask(|tx| Control::AcceptRestartAnswer(answer, tx)).await?;
                Ok(OpResult::Done)
            }
            Step::Resume => {
                self.client.reconnect().await?;
                let call_id = call.call_id().to_owned();
                self.client.done(Request::CallResume { call_id }).await?;
                info!("back on the supernode; the call goes on");
                Ok(OpResult::Done)
            }
        }
    }

    /// Signature first, then the pin: a key is pinned only for a signature it made. The core
    /// verified the signature before asking; it is verified again where the pin is written, so
    /// that no other way into this step can pin a key the supernode merely named.
    fn check_key(&self, claim: &PeerClaim, call: &Call) -> Result<OpResult, CallError> {
        // The peer signed the SDP of its role: the callee's answer, or the caller's offer.
        let role = match call.side() {
            Side::Caller => SdpRole::Answer,
            Side::Callee => SdpRole::Offer,
        };
        let verified = claim.verified(call.call_id(), role, &self.me).ok_or_else(|| {
            CallError::BadSignature { peer: claim.peer.clone(), device_id: claim.device_id }
        })?;
        let check = self.client.home().pin_signed_peer_key(&verified)?;
        Ok(OpResult::KeyChecked(check))
    }

    /// Gathers anew on fresh sockets (the address moved, or a relay died) and hands them to the
    /// running media; dead relays are forgotten.
    async fn regather(&mut self) -> Result<OpResult, CallError> {
        info!("this side's network changed: gathering fresh candidates");
        self.gathered.relays_alive.retain(|alive| alive.load(Ordering::Relaxed));
        let servers = servers(self.client, true).await?;
        let fresh = gather(&servers, self.options.relay_only).await?;
        let public_ip = public_ip_of(&fresh.candidates);
        self.gathered.relays.extend(fresh.relays.iter().copied());
        self.gathered.relays_alive.extend(fresh.relays_alive.iter().cloned());
        let lines = self.ask(|tx| Control::AddSockets(fresh.sockets, fresh.candidates, tx)).await?;
        Ok(OpResult::Gathered { lines, public_ip })
    }

    /// The media session before it runs.
    fn idle_media(&mut self) -> Result<&mut peerline_media::CallMedia, CallError> {
        match &mut self.media {
            MediaSlot::Idle { media, .. } => Ok(media),
            _ => Err(MediaError::Engine {
                context: "setting up the call",
                message: "the media already runs".into(),
            }
            .into()),
        }
    }

    /// Sends a command to the running media and waits for its answer.
    async fn ask<T>(
        &mut self,
        command: impl FnOnce(oneshot::Sender<Result<T, MediaError>>) -> Control<CallSocket>,
    ) -> Result<T, CallError> {
        let gone =
            || MediaError::Engine { context: "restarting ICE", message: "the media ended".into() };
        // A clone of the channel, so that no borrow of the driver (and its media session,
        // which is not `Sync`) is held across the wait.
        let MediaSlot::Running { control, .. } = &self.media else { return Err(gone().into()) };
        let control = control.clone();
        let (tx, rx) = oneshot::channel();
        control.send(command(tx)).await.map_err(|_| gone())?;
        Ok(rx.await.map_err(|_| gone())??)
    }
}
