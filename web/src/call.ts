// One voice call from the browser, with the browser's own WebRTC (docs/protocol.md section 10):
// the offer and answer carry no addresses, candidates are trickled through the supernode, STUN
// comes from the supernode and TURN credentials from `turn_credentials`; each side signs its DTLS
// fingerprint with its device key and checks the other's signature, then the other device's key
// against the pinned one (trust on first use): a bad signature or a changed key ends the call as
// "IDENTITY CHANGED", as in the CLI. Media flows directly between the two devices (or through a
// TURN relay), never through the supernode.
import type { Connection } from "./connection";
import { checkPin, deviceKey, hex } from "./keystore";
import { callSignaturePayload, type CallEndReason, type Event } from "./protocol";
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

  private constructor(
    private readonly conn: Connection,
    private readonly me: string,
    private readonly onChange: () => void,
    view: Omit<CallView, "muted" | "micLevel" | "remoteLevel">,
  ) {
    this.view = { ...view, muted: false, micLevel: 0, remoteLevel: 0 };
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
      const signature = await sign(callSignaturePayload(this.id, "offer", this.me, this.view.peer, fingerprint));
      const placed = this.conn.ask({ type: "call_invite", call_id: this.id, to: this.view.peer, sdp, fingerprint_signature: signature }, "call_placed");
      // Candidates come after setLocalDescription, so after the invite on the connection.
      await this.pc!.setLocalDescription(offer);
      await placed;
    } catch (e) {
      this.finish(e instanceof Error ? e.message : String(e), false);
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
        call.finish("refused", false, alarm);
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
    try {
      await this.start(stunPort, relayOnly);
      await this.pc!.setRemoteDescription({ type: "offer", sdp: this.offer.sdp });
      this.remoteSdpSet = true;
      const answer = await this.pc!.createAnswer();
      const sdp = withoutAddresses(answer.sdp ?? "");
      const fingerprint = sdpFingerprint(sdp);
      if (!fingerprint) throw new Error("the browser made an answer without a DTLS fingerprint");
      const signature = await sign(callSignaturePayload(this.id, "answer", this.me, this.view.peer, fingerprint));
      const accepted = this.conn.ask({ type: "call_accept", call_id: this.id, sdp, fingerprint_signature: signature }, "done");
      await this.pc!.setLocalDescription(answer);
      await this.flushRemote();
      await accepted;
    } catch (e) {
      void this.conn.request({ type: "call_hangup", call_id: this.id }).catch(() => {});
      this.finish(e instanceof Error ? e.message : String(e), false);
    }
  }

  decline(): void {
    if (this.view.phase !== "incoming") return;
    void this.conn.request({ type: "call_decline", call_id: this.id }).catch(() => {});
    this.finish("declined", false);
  }

  hangUp(): void {
    if (!this.active) return;
    if (this.view.phase === "incoming") return this.decline();
    void this.conn.request({ type: "call_hangup", call_id: this.id }).catch(() => {});
    this.finish(this.view.phase === "connected" ? "hung up" : "cancelled", false);
  }

  toggleMute(): void {
    const muted = !this.view.muted;
    for (const t of this.mic?.getAudioTracks() ?? []) t.enabled = !muted;
    this.update({ muted });
  }

  /** An event of this call. */
  async handle(e: Event): Promise<void> {
    // A call_ended ends the call at once, even while it is still being set up.
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
          return this.finish("refused", false, alarm);
        }
        try {
          await this.pc?.setRemoteDescription({ type: "answer", sdp: e.sdp });
          this.remoteSdpSet = true;
          await this.flushRemote();
        } catch (err) {
          void this.conn.request({ type: "call_hangup", call_id: this.id }).catch(() => {});
          this.finish(`the answer could not be used (${err instanceof Error ? err.message : err})`, false);
        }
        return;
      }
      case "call_candidate":
        this.pendingRemote.push(e.candidate);
        if (this.remoteSdpSet) await this.flushRemote();
        return;
      case "call_ended":
        return this.finish(REASONS[e.reason as CallEndReason] ?? "ended", true);
      default:
        return;
    }
  }

  /** The connection to the supernode is gone: so is the call. */
  lost(): void {
    this.finish("the connection to the supernode was lost", false);
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
      throw new Error(
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
    if (relayOnly && !turn?.urls.length) throw new Error("Calls are set to always use a relay, and this network has none.");
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
    pc.onconnectionstatechange = () => {
      if (pc.connectionState === "connected" && this.view.phase !== "connected") {
        this.update({ phase: "connected", connectedAt: Date.now() });
      } else if (pc.connectionState === "failed") {
        void this.conn.request({ type: "call_hangup", call_id: this.id }).catch(() => {});
        this.finish("no media path to the other side", false);
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

  private finish(why: string, byPeer: boolean, alarm?: string): void {
    if (!this.active) return;
    window.clearInterval(this.timer);
    for (const t of this.mic?.getTracks() ?? []) t.stop();
    this.pc?.close();
    void this.audio?.close().catch(() => {});
    this.update({ phase: "ended", ended: byPeer ? why : why, alarm: alarm ?? this.view.alarm });
  }
}
