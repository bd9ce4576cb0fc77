"""A Peerline user whose calls run on aiortc, a WebRTC implementation not written by us.

It speaks the supernode protocol (crates/wire: JSON frames over WebSocket at /v1/ws) itself:
hello, register, login with an Ed25519 device key, contacts, and call signaling with signed DTLS
fingerprints. The media is aiortc's (ICE from aioice, DTLS-SRTP, Opus). interop_aiortc.rs runs it
against the real `peerline` CLI; it also calls itself (one copy --answer, one --call).

Progress goes to stdout as JSON lines, {"event": ...}; errors to stderr, and the exit code is
non-zero on any failure.

    python aiortc_peer.py --url ws://127.0.0.1:PORT --username aio --password PW --register \\
        --add-contact alice --answer --play tone660.wav --record heard.wav

The aiortc pitfalls from ../shared/BROWSER.md are applied: aioice is made to offer 127.0.0.1
(it skips loopback addresses otherwise), no default STUN server, and every track.recv() has a
timeout. Peerline's own rules for SDP are kept too: an offer carries no addresses (candidates
are trickled with call_candidate), and an SDP carries one fingerprint, the signed one.
"""

import argparse
import asyncio
import json
import re
import secrets
import ssl
import sys
import time
import wave
from array import array

import aioice.ice

# aioice leaves out 127.0.0.1 and ::1; the test peers only have loopback in common.
aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]

from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription  # noqa: E402
from aiortc.contrib.media import MediaPlayer  # noqa: E402
from aiortc.mediastreams import MediaStreamError  # noqa: E402
from aiortc.sdp import candidate_from_sdp  # noqa: E402
from cryptography.exceptions import InvalidSignature  # noqa: E402
from cryptography.hazmat.primitives.asymmetric.ed25519 import (  # noqa: E402
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat  # noqa: E402
from websockets.asyncio.client import connect  # noqa: E402

PROTOCOL_VERSION = 1
WS_PATH = "/v1/ws"
SAMPLE_RATE = 48_000


class Failure(Exception):
    """Something went wrong; the message says what."""


def emit(event, **fields):
    """One progress line on stdout."""
    print(json.dumps({"event": event, **fields}), flush=True)


# --- The supernode connection ------------------------------------------------------------------


class Supernode:
    """One WebSocket connection: requests with ids, their answers, and a queue of events."""

    def __init__(self, ws):
        self.ws = ws
        self.next_id = 1
        self.pending = {}
        self.events = asyncio.Queue()
        self.closed = None
        self.reader = asyncio.ensure_future(self._read())

    async def _read(self):
        try:
            async for raw in self.ws:
                frame = json.loads(raw)
                kind = frame.get("type")
                if kind == "event":
                    await self.events.put(frame["event"])
                elif kind in ("ok", "error") and frame.get("id") in self.pending:
                    self.pending.pop(frame["id"]).set_result(frame)
                elif kind == "error":
                    self.closed = f"supernode error without a request id: {frame.get('error')}"
        except Exception as e:  # the connection dropped
            self.closed = f"connection to the supernode failed: {e!r}"
        finally:
            self.closed = self.closed or "the supernode closed the connection"
            for fut in self.pending.values():
                if not fut.done():
                    fut.set_exception(Failure(self.closed))
            await self.events.put(None)

    async def request(self, kind, **fields):
        """Sends a request and returns its result; raises Failure with the error code."""
        if self.closed:
            raise Failure(self.closed)
        rid = self.next_id
        self.next_id += 1
        fut = asyncio.get_running_loop().create_future()
        self.pending[rid] = fut
        await self.ws.send(json.dumps({"id": rid, "type": kind, **fields}))
        frame = await asyncio.wait_for(fut, 15)
        if frame["type"] == "error":
            err = frame["error"]
            raise Failure(f"{kind} failed: {err.get('code')}: {err.get('message', '')}")
        return frame["result"]

    async def poll_event(self, timeout):
        """The next pushed event, or None if none came within `timeout` seconds."""
        try:
            event = await asyncio.wait_for(self.events.get(), max(0.01, timeout))
        except asyncio.TimeoutError:
            return None
        if event is None:
            await self.events.put(None)  # stays closed for the next caller
            raise Failure(self.closed)
        return event

    async def next_event(self, timeout):
        """The next pushed event; Failure when the connection closed or nothing came in time."""
        event = await self.poll_event(timeout)
        if event is None:
            raise Failure(f"timed out waiting for the supernode (after {timeout:.1f} s)")
        return event

    async def heartbeat(self, every):
        """Any request counts as activity; idle connections are closed after the timeout."""
        while True:
            await asyncio.sleep(every)
            try:
                await self.request("ping")
            except Failure:
                return


async def open_session(args):
    """Connects, says hello, registers if asked, and logs in with a fresh device key."""
    url = args.url.rstrip("/")
    if not re.match(r"^wss?://[^/]+$", url):
        raise Failure(f"--url must be ws://HOST:PORT or wss://HOST:PORT, not {args.url}")
    context = None
    if url.startswith("wss://"):
        # A test supernode's self-signed certificate: trust exactly that certificate file.
        if not args.ca_file:
            raise Failure("wss:// needs --ca-file (the supernode's certificate)")
        context = ssl.create_default_context(cafile=args.ca_file)
    ws = await connect(url + WS_PATH, ssl=context, open_timeout=10)
    node = Supernode(ws)
    hello = await node.request("hello", version=PROTOCOL_VERSION, client="aiortc-interop")
    if args.register:
        await node.request("register", username=args.username, password=args.password)
        emit("registered", username=args.username)
    key = Ed25519PrivateKey.generate()
    public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()
    proof = key.sign(b"peerline-login-v1:" + hello["nonce"].encode("ascii")).hex()
    me = await node.request(
        "login",
        username=args.username,
        password=args.password,
        device={"public_key": public, "signature": proof, "name": "aiortc interop"},
    )
    emit("logged_in", username=me["username"], device_id=me["device_id"])
    node.heartbeat_task = asyncio.ensure_future(
        node.heartbeat(max(1, hello["heartbeat_timeout_secs"] / 3))
    )
    return node, key, me["username"]


# --- Contacts ----------------------------------------------------------------------------------


async def contact_state(node, username):
    contacts = (await node.request("contacts"))["contacts"]
    return next((c for c in contacts if c["username"] == username), None)


async def accept_contact(node, username, timeout):
    """Accepts USER's request, waiting for it to arrive if needed."""
    entry = await contact_state(node, username)
    deadline = time.monotonic() + timeout
    while not (entry and entry["state"] in ("incoming", "accepted")):
        event = await node.next_event(max(0.1, deadline - time.monotonic()))
        if event["type"] == "contact_request" and event["username"] == username:
            break
    if not (entry and entry["state"] == "accepted"):
        await node.request("contact_accept", username=username)
    emit("contact_accepted", username=username)


async def wait_until_callable(node, username, timeout):
    """Waits until USER is an accepted contact and online (a call to an offline user is missed)."""
    deadline = time.monotonic() + timeout
    entry = await contact_state(node, username)
    accepted = bool(entry and entry["state"] == "accepted")
    online = accepted and entry["presence"] != "offline"
    while not online:
        event = await node.next_event(max(0.1, deadline - time.monotonic()))
        if event.get("username") != username:
            continue
        if event["type"] == "contact_accepted":
            accepted = True
            emit("contact_accepted", username=username)
        elif event["type"] == "presence":
            online = event["presence"] != "offline"
        elif event["type"] == "contact_removed":
            raise Failure(f"{username} declined the contact request")
    emit("peer_online", username=username)


# --- SDP -----------------------------------------------------------------------------------------


def sdp_lines(sdp):
    return [line for line in sdp.replace("\r\n", "\n").split("\n") if line]


def join_sdp(lines):
    return "\r\n".join(lines) + "\r\n"


def single_fingerprint(sdp):
    """Keeps only the sha-256 fingerprint line.

    aiortc lists its certificate's sha-256, sha-384 and sha-512 fingerprints. Peerline signs one
    fingerprint and refuses an SDP with several (DTLS would accept a certificate matching any of
    them, and only the signed one is vouched for), as browsers send one. Dropping the other two
    changes nothing for aiortc itself: it presents the same certificate.
    """
    lines = sdp_lines(sdp)
    kept = [
        line
        for line in lines
        if not line.startswith("a=fingerprint:") or line.lower().startswith("a=fingerprint:sha-256 ")
    ]
    if not any(line.startswith("a=fingerprint:") for line in kept):
        raise Failure("aiortc's SDP has no sha-256 fingerprint")
    return join_sdp(kept)


def fingerprint_of(sdp):
    """The a=fingerprint: value (`sha-256 AB:CD:...`), which must be the only one."""
    values = {
        line.split(":", 1)[1].strip() for line in sdp_lines(sdp) if line.startswith("a=fingerprint:")
    }
    if len(values) != 1:
        raise Failure(f"expected exactly one a=fingerprint line, found {sorted(values)}")
    return values.pop()


def without_addresses(sdp):
    """An offer as the supernode accepts it: no candidates, no connection or default addresses.

    The ports and addresses aiortc puts into m=, c= and a=rtcp: lines are its default
    candidate; they become the RFC 8840 §4.1.1 placeholders (port 9, 0.0.0.0).
    """
    out = []
    for line in sdp_lines(sdp):
        if line.startswith("a=candidate:") or line == "a=end-of-candidates":
            continue
        if line.startswith("c=IN "):
            line = "c=IN IP4 0.0.0.0"
        elif line.startswith("a=rtcp:"):
            line = "a=rtcp:9 IN IP4 0.0.0.0"
        elif line.startswith("m="):
            parts = line.split(" ")
            parts[1] = "9"
            line = " ".join(parts)
        out.append(line)
    return join_sdp(out)


def candidate_lines(sdp):
    """The `candidate:...` values of an SDP, for trickling."""
    return [line[2:] for line in sdp_lines(sdp) if line.startswith("a=candidate:")]


def audio_mline(sdp):
    """(mid, index) of the first audio m-section; trickled candidates belong to it."""
    index, in_audio = -1, False
    for line in sdp_lines(sdp):
        if line.startswith("m="):
            index += 1
            in_audio = line.startswith("m=audio ")
        elif in_audio and line.startswith("a=mid:"):
            return line[len("a=mid:") :].strip(), index
    if index < 0:
        raise Failure("the SDP has no m= line")
    return None, max(index, 0)


def signature_payload(call_id, role, sender, receiver, fingerprint):
    """crates/wire/src/calls.rs call_signature_payload."""
    text = f"peerline-call-v1\n{call_id}\n{role}\n{sender}\n{receiver}\n{fingerprint.strip()}"
    return text.encode("utf-8")


def sign_sdp(key, call_id, role, sender, receiver, sdp):
    payload = signature_payload(call_id, role, sender, receiver, fingerprint_of(sdp))
    return key.sign(payload).hex()


def verify_sdp(device_key, signature, call_id, role, sender, receiver, sdp):
    """Checks the peer's signature over its SDP's fingerprint with the key the supernode gave."""
    try:
        public = Ed25519PublicKey.from_public_bytes(bytes.fromhex(device_key))
        payload = signature_payload(call_id, role, sender, receiver, fingerprint_of(sdp))
        public.verify(bytes.fromhex(signature), payload)
    except (ValueError, InvalidSignature) as e:
        raise Failure(
            f"the {role}'s fingerprint signature does not verify with device key {device_key}: "
            f"{e!r}"
        ) from None
    emit("signature_verified", role=role)


# --- Media ---------------------------------------------------------------------------------------


class Recorder:
    """Writes received audio as 48 kHz mono 16-bit WAV, placing each frame at its RTP time.

    Gaps in the stream (lost or late packets that aiortc did not conceal) become silence, so the
    recording shows them as a listener would hear them instead of closing them up.
    """

    MAX_GAP = 5 * SAMPLE_RATE  # a jump beyond this is a timestamp reset, not a gap

    def __init__(self, path):
        self.path = path
        self.samples = array("h")
        self.first_pts = None
        self.frames = 0
        self.packets = 0

    def add(self, frame):
        if frame.sample_rate != SAMPLE_RATE:
            raise Failure(f"aiortc decoded {frame.sample_rate} Hz audio, expected 48000")
        channels = len(frame.layout.channels)
        name = frame.format.name
        if name == "s16":
            pcm = array("h", bytes(frame.planes[0])[: frame.samples * channels * 2])
            mono = pcm[::channels] if channels > 1 else pcm
        elif name == "s16p":
            mono = array("h", bytes(frame.planes[0])[: frame.samples * 2])
        else:
            raise Failure(f"aiortc decoded audio as {name}, expected s16")
        if frame.pts is not None:
            if self.first_pts is None:
                self.first_pts = frame.pts
            at = frame.pts - self.first_pts
            if 0 <= at - len(self.samples) <= self.MAX_GAP:
                self.samples.extend([0] * (at - len(self.samples)))
        self.samples.extend(mono)
        self.frames += 1

    def save(self):
        with wave.open(self.path, "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(2)
            out.setframerate(SAMPLE_RATE)
            out.writeframes(self.samples.tobytes())

    def rms(self):
        if not self.samples:
            return 0.0
        return (sum(s * s for s in self.samples) / len(self.samples)) ** 0.5 / 32768


class Call:
    """One aiortc peer connection and what it heard."""

    def __init__(self, args):
        self.args = args
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))  # none: no Google STUN
        self.recorder = Recorder(args.record) if args.record else None
        self.connected = asyncio.Event()
        self.failed = asyncio.Event()
        self.error = None
        self.remote_set = False
        self.early_candidates = []
        self.mline = (None, 0)
        self.tasks = []
        self.heard = False
        self.player = MediaPlayer(args.play, loop=True) if args.play else None

        @self.pc.on("connectionstatechange")
        async def on_state():
            state = self.pc.connectionState
            emit("connection_state", state=state)
            if state == "connected":
                self.connected.set()
            elif state == "failed":
                self.error = "the media connection failed (ICE or DTLS)"
                self.failed.set()

        @self.pc.on("track")
        def on_track(track):
            if track.kind == "audio":
                self.tasks.append(asyncio.ensure_future(self._receive(track)))

    def add_outgoing_audio(self):
        if self.player:
            self.pc.addTrack(self.player.audio)
        else:
            self.pc.addTransceiver("audio", direction="recvonly")

    async def _receive(self, track):
        while True:
            try:
                # A peer that vanished makes recv() wait ~30 s for ICE consent to fail.
                frame = await asyncio.wait_for(track.recv(), 1.0)
            except asyncio.TimeoutError:
                continue
            except MediaStreamError:  # the track ended
                return
            if self.recorder:
                try:
                    self.recorder.add(frame)
                except Failure as e:
                    self.error = str(e)
                    self.failed.set()
                    return
            if not self.heard:
                self.heard = True
                emit("first_audio")

    async def set_remote(self, sdp, kind):
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type=kind))
        self.remote_set = True
        for candidate in self.early_candidates:
            await self.add_candidate(candidate)
        self.early_candidates.clear()

    async def add_candidate(self, line):
        if not self.remote_set:
            self.early_candidates.append(line)
            return
        body = line[2:] if line.startswith("a=") else line
        if not body.startswith("candidate:"):
            raise Failure(f"the peer trickled something that is not a candidate: {line!r}")
        candidate = candidate_from_sdp(body.split(":", 1)[1])
        candidate.sdpMid, candidate.sdpMLineIndex = self.mline
        await self.pc.addIceCandidate(candidate)
        emit("remote_candidate", candidate=body)

    async def stats(self):
        report = await self.pc.getStats()
        inbound = [s for s in report.values() if s.type == "inbound-rtp"]
        outbound = [s for s in report.values() if s.type == "outbound-rtp"]
        return {
            "packets_received": inbound[0].packetsReceived if inbound else 0,
            "packets_sent": outbound[0].packetsSent if outbound else 0,
            "frames_recorded": self.recorder.frames if self.recorder else None,
            "recorded_seconds": round(len(self.recorder.samples) / SAMPLE_RATE, 2)
            if self.recorder
            else None,
            "rms": round(self.recorder.rms(), 4) if self.recorder else None,
        }

    async def close(self):
        for task in self.tasks:
            task.cancel()
        await self.pc.close()
        if self.player and self.player.audio:
            self.player.audio.stop()
        if self.recorder:
            self.recorder.save()


# --- The call flows ------------------------------------------------------------------------------


async def talk(node, call, call_id, args, deadline):
    """From answer to end: candidates in, connected, talk time, hang-up (ours or theirs)."""
    talk_end = None
    reason = None
    while reason is None:
        now = time.monotonic()
        if talk_end is None and call.connected.is_set():
            emit("connected")
            talk_end = now + args.duration if args.duration else deadline
        if call.failed.is_set():
            await node.request("call_hangup", call_id=call_id)
            raise Failure(call.error)
        limit = talk_end if talk_end is not None else deadline
        if now >= limit:
            if talk_end is None:
                raise Failure("the media did not connect in time")
            if not args.duration:
                raise Failure("the peer did not hang up in time")
            await node.request("call_hangup", call_id=call_id)
            reason = "hung_up_here"
            break
        # Short polls until connected, to notice the connection state changes.
        event = await node.poll_event(min(limit - now, 0.05 if talk_end is None else 1.0))
        if event is None:
            continue
        if event.get("call_id") != call_id:
            if event["type"] == "call_incoming":
                await node.request("call_decline", call_id=event["call_id"], busy=True)
            continue
        if event["type"] == "call_candidate":
            await call.add_candidate(event["candidate"])
        elif event["type"] == "call_ended":
            reason = event["reason"]
            if talk_end is None:
                raise Failure(f"the call ended ({reason}) before the media connected")
    stats = await call.stats()
    await call.close()
    emit("stats", **stats)
    emit("ended", reason=reason)
    if stats["packets_received"] == 0:
        raise Failure("no audio packets arrived from the peer")


async def answer(node, key, me, args, deadline):
    """Waits for one call, checks the caller's signature, accepts with aiortc's answer."""
    emit("waiting_for_call")
    while True:
        event = await node.next_event(max(0.1, deadline - time.monotonic()))
        if event["type"] == "call_incoming":
            break
    call_id, caller, offer = event["call_id"], event["from"], event["sdp"]
    emit("incoming", call_id=call_id, **{"from": caller}, device_id=event["device_id"])
    verify_sdp(event["device_key"], event["fingerprint_signature"], call_id, "offer", caller, me, offer)
    await node.request("call_ringing", call_id=call_id)

    call = Call(args)
    call.mline = audio_mline(offer)
    await call.set_remote(offer, "offer")
    call.add_outgoing_audio()  # reuses the offered transceiver: the answer is sendrecv
    await call.pc.setLocalDescription(await call.pc.createAnswer())  # gathers every candidate
    # The answer keeps aiortc's candidates: the callee's address goes out only now, on accept.
    answer_sdp = single_fingerprint(call.pc.localDescription.sdp)
    signature = sign_sdp(key, call_id, "answer", me, caller, answer_sdp)
    await node.request("call_accept", call_id=call_id, sdp=answer_sdp, fingerprint_signature=signature)
    emit("accepted", candidates=len(candidate_lines(answer_sdp)))
    await talk(node, call, call_id, args, deadline)


async def place_call(node, key, me, args, deadline):
    """Calls a contact: offer without addresses, then trickle aiortc's candidates."""
    callee = args.call.lower()
    await wait_until_callable(node, callee, max(0.1, deadline - time.monotonic()))
    call = Call(args)
    call.add_outgoing_audio()
    await call.pc.setLocalDescription(await call.pc.createOffer())  # gathers every candidate
    local = single_fingerprint(call.pc.localDescription.sdp)
    offer = without_addresses(local)
    call.mline = audio_mline(offer)
    call_id = secrets.token_hex(16)
    signature = sign_sdp(key, call_id, "offer", me, callee, offer)
    placed = await node.request(
        "call_invite", call_id=call_id, to=callee, sdp=offer, fingerprint_signature=signature
    )
    emit("dialing", call_id=call_id, devices=placed["ringing_devices"])
    # The supernode holds these until a device of the callee accepts.
    for line in candidate_lines(local):
        await node.request("call_candidate", call_id=call_id, candidate=line)
        emit("local_candidate", candidate=line)

    while True:
        event = await node.next_event(max(0.1, deadline - time.monotonic()))
        if event.get("call_id") != call_id:
            continue
        if event["type"] == "call_ringing":
            emit("ringing")
        elif event["type"] == "call_candidate":
            await call.add_candidate(event["candidate"])  # kept until the answer is set
        elif event["type"] == "call_ended":
            await call.close()
            raise Failure(f"the call ended before it was answered: {event['reason']}")
        elif event["type"] == "call_accepted":
            answer_sdp = event["sdp"]
            verify_sdp(
                event["device_key"],
                event["fingerprint_signature"],
                call_id,
                "answer",
                callee,
                me,
                answer_sdp,
            )
            emit("answered", device_id=event["device_id"])
            await call.set_remote(answer_sdp, "answer")
            break
    await talk(node, call, call_id, args, deadline)


async def run(args):
    deadline = time.monotonic() + args.timeout
    node, key, me = await open_session(args)
    try:
        if args.add_contact:
            try:
                await node.request("contact_add", username=args.add_contact)
            except Failure as e:
                if "already_contacts" not in str(e):
                    raise
            emit("contact_requested", username=args.add_contact)
        if args.accept_contact:
            await accept_contact(node, args.accept_contact, max(0.1, deadline - time.monotonic()))
        if args.answer:
            await answer(node, key, me, args, deadline)
        elif args.call:
            await place_call(node, key, me, args, deadline)
        elif args.wait_contact:
            await wait_until_callable(node, args.wait_contact, max(0.1, deadline - time.monotonic()))
    finally:
        node.heartbeat_task.cancel()
        await node.ws.close()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", required=True, help="ws://127.0.0.1:PORT (or wss:// with --ca-file)")
    p.add_argument("--ca-file", help="certificate to trust for wss:// (a test supernode's own)")
    p.add_argument("--username", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--register", action="store_true", help="create the account first")
    p.add_argument("--add-contact", metavar="USER", help="send USER a contact request")
    p.add_argument("--accept-contact", metavar="USER", help="accept USER's request (waits for it)")
    p.add_argument("--wait-contact", metavar="USER", help="wait until USER is a contact and online")
    role = p.add_mutually_exclusive_group()
    role.add_argument("--call", metavar="USER", help="call USER (waits until they are online)")
    role.add_argument("--answer", action="store_true", help="accept one incoming call")
    p.add_argument("--play", metavar="WAV", help="outgoing audio, looped")
    p.add_argument("--record", metavar="WAV", help="write received audio (48 kHz mono)")
    p.add_argument(
        "--duration",
        type=float,
        help="talk time after connected, then hang up (default: until the peer hangs up)",
    )
    p.add_argument("--timeout", type=float, default=60, help="give up after this many seconds")
    args = p.parse_args()
    try:
        asyncio.run(asyncio.wait_for(run(args), args.timeout + 5))
    except (Failure, asyncio.TimeoutError, OSError) as e:
        message = str(e) or type(e).__name__
        emit("error", message=message)
        print(f"aiortc_peer ({args.username}): {message}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
