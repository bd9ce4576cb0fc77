// One voice call from the browser, with the browser's own WebRTC (docs/protocol.md section 10):
// the offer and answer carry no addresses, candidates are trickled through the supernode, STUN
// comes from the supernode and TURN credentials from `turn_credentials`; each side signs its DTLS
// fingerprint with its device key and checks the other's signature, then the other device's key
// against the pinned one (trust on first use): a bad signature or a changed key ends the call as
// "IDENTITY CHANGED", as in the CLI. Media flows directly between the two devices (or through a
// TURN relay), never through the supernode. As in the CLI (crates/call-core), a stalled path is
// recovered by an ICE restart that only the caller makes (`call_restart`), an answered call
// outlives a lost supernode connection (`call_resume` on the next one), and each call that ended
// yields its entry for the account's call log (`call_report`).
import type { Connection } from "./connection";
import { checkPin, deviceKey, hex } from "./keystore";
import { callSignaturePayload, type CallEndReason, type Event, type Request } from "./protocol";
import { fromHex } from "./safety";

export type CallPhase = "calling" | "ringing" | "incoming" | "connecting" | "connected" | "ended";

/** What the call screen shows. */
export interface CallView {
  id: string;
  peer: string;
  outgoing: boolean;
  phase: CallPhase;
  /** When media started flowing (ms since the epoch). */
  connectedAt?: number;
  muted: boolean;
  /** `direct` or `relay`, from the selected candidate pair. */
  path?: string;
  /** 0..1: the microphone, and what arrives from the other side. */
  micLevel: number;
  remoteLevel: number;
  /** Why it ended, for people. */
  ended?: string;
  /** A loud warning: the other side's identity could not be verified. */
  alarm?: string;
  /** A warning that does not stop the call: the other side uses a device not seen before. */
  caution?: string;
  /** The media path of an answered call stalled: ICE is restarting (the caller restarts). */
  reconnecting?: boolean;
  /** ICE restarts this call went through. */
  restarts: number;
  /** The connection to the supernode was lost during the answered call: the media goes on
   * while the app reconnects and takes the call over (`call_resume`). */
  resuming?: boolean;
}

const REASONS: Record<string, string> = {
  declined: "declined",
  busy: "busy",
  cancelled: "cancelled",
  no_answer: "no answer",
  answered_elsewhere: "answered on another device",
  hung_up: "hung up",
  peer_gone: "the other side went away",
  unavailable: "unavailable",
  no_audio_device: "the other device has no microphone or speaker",
  no_relay: "the other device only takes relayed calls and there is no relay",
};

/** A call's entry for the account's call log, as `call_report` sends it. */
export type CallReport = Extract<Request, { type: "call_report" }>;

/** The microphone is missing or refused: the call cannot start (said in words on the call
 * screen, reported as `no_audio_device`). */
class MicrophoneError extends Error {}

/** "Always relay calls" is on and the network has no TURN relay (reported as `no_relay`). */
class NoRelayError extends Error {}

/** How long an answered call's media path may stall before the caller restarts ICE (or the
 * callee asks it to), and how long it may stay down, restarts included, before the call ends. */
const STALL_MS = 2000;
const RECOVERY_MS = 30000;
/** Restarts one side may make in a call (the supernode refuses more than 16). */
const MAX_RESTARTS = 16;
/** How long an answered call waits for the supernode connection to come back (the other side
 * waits 45 s for this device to resume the call). */
const RESUME_MS = 40000;

/** Where the test (or a careful user) turns off the browser's audio processing. */
const AUDIO_PROCESSING = "peerline.audio_processing";

/** The `a=fingerprint:` value of an SDP as signed ("sha-256 AB:CD…"); undefined when there is
 * none or the lines disagree. */
export function sdpFingerprint(sdp: string): string | undefined {
  const all = [...sdp.matchAll(/^a=fingerprint:(\S+)\s+(\S+)\s*$/gm)].map(
    (m) => `${(m[1] ?? "").toLowerCase()} ${(m[2] ?? "").toUpperCase()}`,
  );
  return all.length && all.every((f) => f === all[0]) ? all[0] : undefined;
}

/** The SDP as signaled: no candidates, no address in `c=` or `o=` lines. */
export function withoutAddresses(sdp: string): string {
  return sdp
    .split("\r\n")
    .filter((l) => !l.startsWith("a=candidate:") && l !== "a=end-of-candidates")
    .map((l) => (l.startsWith("c=IN IP4 ") ? "c=IN IP4 0.0.0.0" : l.startsWith("c=IN IP6 ") ? "c=IN IP6 ::" : l))
    .map((l) => (l.startsWith("o=") ? l.replace(/ IN IP(4|6) \S+$/, (_m, v) => ` IN IP${v} ${v === "4" ? "0.0.0.0" : "::"}`) : l))
    .join("\r\n");
}

async function sign(payload: Uint8Array): Promise<string> {
  const key = await deviceKey();
  return hex(await crypto.subtle.sign({ name: "Ed25519" }, key.keys.privateKey, payload as BufferSource));
}

async function verify(publicKey: string, signature: string, payload: Uint8Array): Promise<boolean> {
  try {
    const key = await crypto.subtle.importKey("raw", fromHex(publicKey) as BufferSource, { name: "Ed25519" }, false, ["verify"]);
    return await crypto.subtle.verify({ name: "Ed25519" }, key, fromHex(signature) as BufferSource, payload as BufferSource);
  } catch {
    return false;
  }
}

function randomCallId(): string {
  return hex(crypto.getRandomValues(new Uint8Array(16)));
}

export class Call {
  view: CallView;
  private pc?: RTCPeerConnection;
  private mic?: MediaStream;
  private remoteSdpSet = false;
  private pendingRemote: string[] = [];
  private offer?: { sdp: string; deviceId: number; deviceKey: string; signature: string };
  private timer?: number;
  private audio?: AudioContext;
  /** The remote stream, for the view's <audio> element. */
  remoteStream?: MediaStream;
  /** Settles when dialing (caller) or checking the offer (callee) is done: events of the call
   * that arrive earlier (the other side can ring and answer before our own setup finished)
   * wait for it, so none is lost. */
  private ready: Promise<void> = Promise.resolve();
  /** When the call was placed, or rang here (ms since the epoch), for the call log. */
  private readonly startedAt = Date.now();
  /** Whether the supernode has the call: an outgoing call whose invite was refused has no
   * entry in the call log. */
  private placed: boolean;
  /** Why it ended, as the call log says it (`hung_up_here`, a CallEndReason, …). */
  private endCode?: string;

  /** Events of the call, handled one after the other (a restart's SDP before its candidates). */
  private events: Promise<void> = Promise.resolve();
  /** The other side's DTLS fingerprint, as signed at the start: a restart may not change it. */
  private remoteFingerprint?: string;
  /** Ours, as signed. */
  private localFingerprint?: string;
  /** The caller's ICE restart waiting for its answer. */
  private restarting = false;
  private restartsSent = 0;
  private stallTimer?: number;
  private resumeTimer?: number;
  /** When the media path of the answered call went down (ms since the epoch). */
  private downSince?: number;

  private constructor(
    private conn: Connection,
    private readonly me: string,
    private readonly onChange: () => void,
    view: Omit<CallView, "muted" | "micLevel" | "remoteLevel" | "restarts">,
  ) {
    this.view = { ...view, muted: false, micLevel: 0, remoteLevel: 0, restarts: 0 };
    this.placed = !view.outgoing;
  }

  private update(patch: Partial<CallView>): void {
    this.view = { ...this.view, ...patch };
    this.onChange();
  }

  get id(): string {
    return this.view.id;
  }

  get active(): boolean {
    return this.view.phase !== "ended";
  }

  /** Calls `peer`: microphone, offer, signature, invite, then trickled candidates. The call
   * is returned at once, so that its events find it while it dials. */
  static place(conn: Connection, me: string, peer: string, stunPort: number | undefined, relayOnly: boolean, onChange: () => void): Call {
    const call = new Call(conn, me, onChange, { id: randomCallId(), peer, outgoing: true, phase: "calling" });
    call.ready = call.dial(stunPort, relayOnly);
    return call;
  }

  private async dial(stunPort: number | undefined, relayOnly: boolean): Promise<void> {
    try {
      await this.start(stunPort, relayOnly);
      const offer = await this.pc!.createOffer();
      const sdp = withoutAddresses(offer.sdp ?? "");
      const fingerprint = sdpFingerprint(sdp);
      if (!fingerprint) throw new Error("the browser made an offer without a DTLS fingerprint");
      this.localFingerprint = fingerprint;
      const signature = await sign(callSignaturePayload(this.id, "offer", this.me, this.view.peer, fingerprint));
      const placed = this.conn.ask({ type: "call_invite", call_id: this.id, to: this.view.peer, sdp, fingerprint_signature: signature }, "call_placed");
      // Candidates come after setLocalDescription, so after the invite on the connection.
      await this.pc!.setLocalDescription(offer);
      await placed;
      this.placed = true;
    } catch (e) {
      this.finish(e instanceof Error ? e.message : String(e), e instanceof MicrophoneError ? "no_audio_device" : e instanceof NoRelayError ? "no_relay" : "failed");
    }
  }

  /** A call that rings here: its signature and key are checked before it is shown. The call is
   * returned at once, so that its events (a cancel) find it while it is checked. */
  static incoming(conn: Connection, me: string, e: Extract<Event, { type: "call_incoming" }>, onChange: () => void): Call {
    const call = new Call(conn, me, onChange, { id: e.call_id, peer: e.from, outgoing: false, phase: "incoming" });
    call.offer = { sdp: e.sdp, deviceId: e.device_id, deviceKey: e.device_key, signature: e.fingerprint_signature };
    call.ready = (async () => {
      const alarm = await call.checkPeer(e.sdp, "offer", e.from, me, e.device_id, e.device_key, e.fingerprint_signature);
      if (!call.active) return;
      if (alarm) {
        void conn.request({ type: "call_decline", call_id: call.id }).catch(() => {});
        call.finish("refused", "identity_changed", alarm);
      } else {
        void conn.request({ type: "call_ringing", call_id: call.id }).catch(() => {});
      }
    })();
    return call;
  }

  /** Checks the other side's signature, then its device key against the pins; returns the
   * alarm to show when the call must be refused. */
  private async checkPeer(sdp: string, role: "offer" | "answer", from: string, to: string, deviceId: number, key: string, signature: string): Promise<string | undefined> {
    const fingerprint = sdpFingerprint(sdp);
    const signed = fingerprint && (await verify(key, signature, callSignaturePayload(this.id, role, from, to, fingerprint)));
    if (!signed) return `IDENTITY CHANGED: ${from}'s call is not signed by their device key. The call was refused.`;
    this.remoteFingerprint = fingerprint;
    const pin = await checkPin(from, deviceId, key);
    if (pin === "changed") {
      return `IDENTITY CHANGED: ${from}'s device ${deviceId} has a different key than before. The call was refused; compare safety numbers.`;
    }
    if (pin === "new_device") {
      this.update({
        caution: `${from} is using a device not seen before (device ${deviceId}). If you did not expect it, compare safety numbers.`,
      });
    }
    return undefined;
  }

  /** The user answers: microphone, answer, signature, accept, then candidates. */
  async accept(stunPort: number | undefined, relayOnly: boolean): Promise<void> {
    await this.ready;
    if (this.view.phase !== "incoming" || !this.offer) return;
    this.update({ phase: "connecting" });
    let answered = false;
    try {
      await this.start(stunPort, relayOnly);
      await this.pc!.setRemoteDescription({ type: "offer", sdp: this.offer.sdp });
      this.remoteSdpSet = true;
      const answer = await this.pc!.createAnswer();
      const sdp = withoutAddresses(answer.sdp ?? "");
      const fingerprint = sdpFingerprint(sdp);
      if (!fingerprint) throw new Error("the browser made an answer without a DTLS fingerprint");
      this.localFingerprint = fingerprint;
      const signature = await sign(callSignaturePayload(this.id, "answer", this.me, this.view.peer, fingerprint));
      answered = true;
      const accepted = this.conn.ask({ type: "call_accept", call_id: this.id, sdp, fingerprint_signature: signature }, "done");
      await this.pc!.setLocalDescription(answer);
      await this.flushRemote();
      await accepted;
    } catch (e) {
      const code = e instanceof MicrophoneError ? "no_audio_device" : e instanceof NoRelayError ? "no_relay" : "failed";
      if (answered) {
        void this.conn.request({ type: "call_hangup", call_id: this.id }).catch(() => {});
      } else {
        // Not answered yet: this device cannot take the call; others of the account may.
        const reason = e instanceof MicrophoneError ? ("no_audio_device" as const) : e instanceof NoRelayError ? ("no_relay" as const) : undefined;
        void this.conn.request({ type: "call_decline", call_id: this.id, ...(reason ? { reason } : { busy: true }) }).catch(() => {});
      }
      this.finish(e instanceof Error ? e.message : String(e), code);
    }
  }

  decline(): void {
    if (this.view.phase !== "incoming") return;
    void this.conn.request({ type: "call_decline", call_id: this.id }).catch(() => {});
    this.finish("declined", "declined_here");
  }

  hangUp(): void {
    if (!this.active) return;
    if (this.view.phase === "incoming") return this.decline();
    void this.conn.request({ type: "call_hangup", call_id: this.id }).catch(() => {});
    const answered = this.view.connectedAt !== undefined;
    this.finish(answered ? "hung up" : "cancelled", answered ? "hung_up_here" : "cancelled_here");
  }

  toggleMute(): void {
    const muted = !this.view.muted;
    for (const t of this.mic?.getAudioTracks() ?? []) t.enabled = !muted;
    this.update({ muted });
  }

  /** An event of this call. */
  handle(e: Event): Promise<void> {
    // A call_ended ends the call at once, even while it is still being set up or restarted.
    if (e.type === "call_ended") return this.handleNow(e);
    this.events = this.events.then(() => this.handleNow(e)).catch(() => {});
    return this.events;
  }

  private async handleNow(e: Event): Promise<void> {
    if (e.type !== "call_ended") await this.ready;
    if (!this.active) return;
    switch (e.type) {
      case "call_ringing":
        if (this.view.phase === "calling") this.update({ phase: "ringing" });
        return;
      case "call_accepted": {
        this.update({ phase: "connecting" });
        const alarm = await this.checkPeer(e.sdp, "answer", this.view.peer, this.me, e.device_id, e.device_key, e.fingerprint_signature);
        if (alarm) {
          void this.conn.request({ type: "call_hangup", call_id: this.id }).catch(() => {});
          return this.finish("refused", "identity_changed", alarm);
        }
        try {
          await this.pc?.setRemoteDescription({ type: "answer", sdp: e.sdp });
          this.remoteSdpSet = true;
          await this.flushRemote();
        } catch (err) {
          void this.conn.request({ type: "call_hangup", call_id: this.id }).catch(() => {});
          this.finish(`the answer could not be used (${err instanceof Error ? err.message : err})`, "failed");
        }
        return;
      }
      case "call_candidate":
        this.pendingRemote.push(e.candidate);
        if (this.remoteSdpSet) await this.flushRemote();
        return;
      case "call_restart":
        return this.restarted(e.sdp);
      case "call_ended":
        return this.finish(REASONS[e.reason as CallEndReason] ?? "ended", /^[a-z_]{1,32}$/.test(e.reason) ? e.reason : "unknown");
      default:
        return;
    }
  }

  /** The media path of an answered call changed state: a stall that lasts STALL_MS makes the
   * caller restart ICE (RFC 8445 §9) and the callee ask for it (only the caller restarts, so
   * offers never cross); a path down for RECOVERY_MS ends the call. */
  private iceChanged(state: RTCIceConnectionState): void {
    if (this.view.connectedAt === undefined || !this.active) return;
    if (state === "connected" || state === "completed") {
      window.clearTimeout(this.stallTimer);
      this.stallTimer = undefined;
      this.downSince = undefined;
      if (this.view.reconnecting) this.update({ reconnecting: false });
      return;
    }
    if ((state === "disconnected" || state === "failed") && this.stallTimer === undefined) {
      this.downSince ??= Date.now();
      const check = () => {
        this.stallTimer = undefined;
        const now = this.pc?.iceConnectionState;
        if (!this.active || now === "connected" || now === "completed") return;
        if (Date.now() - (this.downSince ?? Date.now()) > RECOVERY_MS) {
          void this.conn.request({ type: "call_hangup", call_id: this.id }).catch(() => {});
          return this.finish("the media path was lost", "media_path_lost");
        }
        if (!this.view.reconnecting) this.update({ reconnecting: true });
        if (this.view.outgoing) void this.restartIce();
        else if (this.restartsSent < MAX_RESTARTS) {
          this.restartsSent++;
          void this.conn.request({ type: "call_restart", call_id: this.id }).catch(() => {});
        }
        this.stallTimer = window.setTimeout(check, 5000);
      };
      this.stallTimer = window.setTimeout(check, STALL_MS);
    }
  }

  /** The caller restarts ICE: a new offer (new ICE credentials, the same signed DTLS
   * fingerprint), then fresh candidates; the answer comes as a `call_restart` event. */
  private async restartIce(): Promise<void> {
    const pc = this.pc;
    if (!pc || !this.view.outgoing || this.restarting || this.restartsSent >= MAX_RESTARTS) return;
    this.restarting = true;
    this.restartsSent++;
    try {
      const offer = await pc.createOffer({ iceRestart: true });
      const sdp = withoutAddresses(offer.sdp ?? "");
      if (sdpFingerprint(sdp) !== this.localFingerprint) throw new Error("the browser changed its DTLS fingerprint");
      this.remoteSdpSet = false;
      // The restart before its candidates on the connection, as for the first offer.
      const sent = this.conn.ask({ type: "call_restart", call_id: this.id, sdp }, "done");
      await pc.setLocalDescription(offer);
      await sent;
      this.update({ restarts: this.view.restarts + 1 });
    } catch {
      this.restarting = false;
    }
  }

  /** A `call_restart` from the other side: to the caller, the answer to its restart (or, without
   * SDP, the callee's request for one); to the callee, the caller's new offer, answered here. A
   * new DTLS fingerprint is refused: it was not the one signed. */
  private async restarted(sdp: string | undefined): Promise<void> {
    const pc = this.pc;
    if (!pc || this.view.connectedAt === undefined) return;
    if (!sdp) {
      if (this.view.outgoing) await this.restartIce();
      return;
    }
    if (sdpFingerprint(sdp) !== this.remoteFingerprint) {
      void this.conn.request({ type: "call_hangup", call_id: this.id }).catch(() => {});
      return this.finish("refused", "identity_changed", `IDENTITY CHANGED: ${this.view.peer}'s device restarted the call with a DTLS fingerprint it did not sign. The call was ended.`);
    }
    try {
      if (this.view.outgoing) {
        if (!this.restarting) return;
        await pc.setRemoteDescription({ type: "answer", sdp });
        this.restarting = false;
      } else {
        await pc.setRemoteDescription({ type: "offer", sdp });
        const answer = await pc.createAnswer();
        const mine = withoutAddresses(answer.sdp ?? "");
        if (sdpFingerprint(mine) !== this.localFingerprint) throw new Error("the browser changed its DTLS fingerprint");
        const sent = this.conn.ask({ type: "call_restart", call_id: this.id, sdp: mine }, "done");
        await pc.setLocalDescription(answer);
        await sent;
        this.update({ restarts: this.view.restarts + 1 });
      }
      this.remoteSdpSet = true;
      await this.flushRemote();
    } catch {
      this.restarting = false;
    }
  }

  /** The connection to the supernode is gone. A call not answered yet is gone with it; an
   * answered one goes on peer to peer while the app reconnects, then is taken over with
   * `call_resume` (see `resume`), or ends after RESUME_MS. */
  lost(): void {
    if (!this.active) return;
    if (this.view.connectedAt === undefined) return this.finish("the connection to the supernode was lost", "supernode_lost");
    if (this.view.resuming) return;
    this.update({ resuming: true });
    window.clearTimeout(this.resumeTimer);
    this.resumeTimer = window.setTimeout(() => {
      if (this.view.resuming) this.finish("the connection to the supernode was lost", "supernode_lost");
    }, RESUME_MS);
  }

  /** Takes the call over on the new connection `conn` after a reconnect. If the path died with
   * the old address, the stall handling restarts ICE as usual. */
  async resume(conn: Connection): Promise<void> {
    if (!this.active || !this.view.resuming) return;
    this.conn = conn;
    try {
      await conn.ask({ type: "call_resume", call_id: this.id }, "done");
      window.clearTimeout(this.resumeTimer);
      this.update({ resuming: false });
    } catch {
      // The call ended meanwhile (the supernode noticed the old connection was gone).
      this.finish("the connection to the supernode was lost", "supernode_lost");
    }
  }

  private async flushRemote(): Promise<void> {
    for (const c of this.pendingRemote.splice(0)) {
      const candidate = c.startsWith("a=") ? c.slice(2) : c;
      await this.pc?.addIceCandidate({ candidate, sdpMLineIndex: 0 }).catch(() => {});
    }
  }

  /** Microphone and peer connection, with the supernode's STUN and the TURN relays. */
  private async start(stunPort: number | undefined, relayOnly: boolean): Promise<void> {
    const processing = localStorage.getItem(AUDIO_PROCESSING) !== "0";
    try {
      this.mic = await navigator.mediaDevices.getUserMedia({
        audio: { echoCancellation: processing, noiseSuppression: processing, autoGainControl: processing },
      });
    } catch (e) {
      const name = e instanceof DOMException ? e.name : "";
      throw new MicrophoneError(
        name === "NotAllowedError"
          ? "Microphone permission denied: allow the microphone for this site to call."
          : name === "NotFoundError"
            ? "No microphone found: connect one to call."
            : `The microphone cannot be used (${name || e}).`,
      );
    }
    const iceServers: RTCIceServer[] = [];
    if (stunPort) {
      const host = location.hostname.includes(":") ? `[${location.hostname}]` : location.hostname;
      iceServers.push({ urls: `stun:${host}:${stunPort}` });
    }
    const turn = await this.conn.ask({ type: "turn_credentials" }, "turn_credentials").catch(() => undefined);
    if (turn && turn.urls.length) iceServers.push({ urls: turn.urls, username: turn.username, credential: turn.password });
    if (relayOnly && !turn?.urls.length) throw new NoRelayError("Calls are set to always use a relay, and this network has none.");
    const pc = new RTCPeerConnection({ iceServers, iceTransportPolicy: relayOnly ? "relay" : "all" });
    this.pc = pc;
    for (const t of this.mic.getAudioTracks()) pc.addTrack(t, this.mic);
    pc.onicecandidate = (ev) => {
      const c = ev.candidate?.candidate;
      if (c) void this.conn.request({ type: "call_candidate", call_id: this.id, candidate: c }).catch(() => {});
    };
    pc.ontrack = (ev) => {
      this.remoteStream = ev.streams[0] ?? new MediaStream([ev.track]);
      this.onChange();
    };
    pc.oniceconnectionstatechange = () => this.iceChanged(pc.iceConnectionState);
    pc.onconnectionstatechange = () => {
      if (pc.connectionState === "connected" && this.view.phase !== "connected") {
        this.update({ phase: "connected", connectedAt: Date.now() });
      } else if (pc.connectionState === "failed" && this.view.connectedAt === undefined) {
        void this.conn.request({ type: "call_hangup", call_id: this.id }).catch(() => {});
        const answered = this.view.connectedAt !== undefined;
        this.finish(answered ? "the media path was lost" : "no media path to the other side", answered ? "media_path_lost" : "no_media_path");
      }
    };
    this.meter();
  }

  /** The microphone level (WebAudio) and the received level, path and state (getStats), a few
   * times a second. */
  private meter(): void {
    const Ctx = window.AudioContext;
    let analyser: AnalyserNode | undefined;
    if (Ctx && this.mic) {
      this.audio = new Ctx();
      analyser = this.audio.createAnalyser();
      analyser.fftSize = 512;
      this.audio.createMediaStreamSource(this.mic).connect(analyser);
    }
    const samples = new Float32Array(512);
    this.timer = window.setInterval(async () => {
      let micLevel = 0;
      if (analyser) {
        analyser.getFloatTimeDomainData(samples);
        micLevel = Math.min(1, Math.sqrt(samples.reduce((a, v) => a + v * v, 0) / samples.length) * 4);
      }
      let remoteLevel = this.view.remoteLevel;
      let path = this.view.path;
      const stats = await this.pc?.getStats().catch(() => undefined);
      stats?.forEach((s) => {
        if (s.type === "inbound-rtp" && s.kind === "audio") remoteLevel = typeof s.audioLevel === "number" ? s.audioLevel : remoteLevel;
        if (s.type === "transport" && s.selectedCandidatePairId) {
          const pair = stats.get(s.selectedCandidatePairId);
          const local = pair && stats.get(pair.localCandidateId);
          const remote = pair && stats.get(pair.remoteCandidateId);
          if (local && remote) path = local.candidateType === "relay" || remote.candidateType === "relay" ? "relay" : "direct";
        }
      });
      if (this.active) this.update({ micLevel, remoteLevel, path });
    }, 250);
  }

  /** The call log entry of a call that ended, when this device should report it: every call it
   * placed, and every call it answered (the supernode logs the ones that rang unanswered as
   * missed; the device that answered elsewhere reports those). */
  report(): CallReport | undefined {
    if (this.active || !this.placed || !this.endCode) return undefined;
    const answered = this.view.connectedAt;
    if (!this.view.outgoing && answered === undefined && this.endCode !== "declined_here" && this.endCode !== "identity_changed") return undefined;
    const ended = Math.max(Date.now(), this.startedAt);
    return {
      type: "call_report",
      call_id: this.id,
      peer: this.view.peer,
      outgoing: this.view.outgoing,
      started_at: this.startedAt,
      answered_at: answered === undefined ? undefined : Math.min(Math.max(answered, this.startedAt), ended),
      ended_at: ended,
      reason: this.endCode,
      path: answered === undefined ? undefined : this.view.path === "relay" || this.view.path === "direct" ? this.view.path : "unknown",
    };
  }

  private finish(why: string, code: string, alarm?: string): void {
    if (!this.active) return;
    this.endCode = code;
    window.clearInterval(this.timer);
    window.clearTimeout(this.stallTimer);
    window.clearTimeout(this.resumeTimer);
    for (const t of this.mic?.getTracks() ?? []) t.stop();
    this.pc?.close();
    void this.audio?.close().catch(() => {});
    this.update({ phase: "ended", ended: why, alarm: alarm ?? this.view.alarm });
  }
}
