// The Peerline client protocol, version 1, as TypeScript types: what the web client sends and
// receives over wss://HOST:PORT/v1/ws. docs/protocol.md describes it; `npm run check`
// (scripts/check-protocol.mjs, run by scripts/test-web) type-checks every JSON example of that
// document against these types and checks that every request, reply, event and error code it
// names is in these unions and nothing else is, so these types cannot drift from the document
// (which crates/wire/tests/protocol_doc.rs checks against the Rust wire types).
//
// Conventions: optional request fields may be left out or null; the supernode leaves out absent
// optional fields in what it sends. Ids and timestamps fit in 53 bits (a JS number).

/** The protocol version this client speaks (`hello.version`). */
export const PROTOCOL_VERSION = 1;
/** The WebSocket path, on the same origin as the app. */
export const WS_PATH = "/v1/ws";
/** Largest frame, in bytes, in both directions. */
export const MAX_FRAME_BYTES = 65536;

/** Milliseconds since the Unix epoch, UTC, from the supernode's clock. */
export type TimestampMs = number;
export type MessageId = number;
export type DeviceId = number;
/** 32 lowercase hex characters, chosen at random by the caller. */
export type CallId = string;

export type Status = "online" | "away" | "busy" | "invisible";
export type Presence = "online" | "away" | "busy" | "offline";
export type ContactState = "accepted" | "incoming" | "outgoing" | "blocked";
export type ReceiptKind = "delivered" | "read";
export type EndReason =
  | "shutdown"
  | "device_removed"
  | "logged_out"
  | "heartbeat_timeout"
  | "slow_reader"
  | "protocol_violation"
  | "password_changed"
  | "login_timeout"
  | "too_many_connections";
/** May grow within version 1: treat an unknown reason as "the call ended". */
export type CallEndReason =
  | "declined"
  | "busy"
  | "cancelled"
  | "no_answer"
  | "answered_elsewhere"
  | "hung_up"
  | "peer_gone"
  | "unavailable"
  | "no_audio_device"
  | "no_relay";

// ---- objects ----

export interface ChatMessage {
  id: MessageId;
  from: string;
  to: string;
  text: string;
  sent_at: TimestampMs;
  delivered_at?: TimestampMs;
  read_at?: TimestampMs;
}

export interface Contact {
  username: string;
  display_name: string;
  state: ContactState;
  presence: Presence;
  /** The greeting of a pending request. */
  message?: string;
}

export interface DeviceInfo {
  id: DeviceId;
  name: string;
  public_key: string;
  created_at: TimestampMs;
  last_seen_at: TimestampMs;
  online: boolean;
  current: boolean;
}

export interface UserSummary {
  username: string;
  display_name: string;
}

export interface DeviceKey {
  device_id: DeviceId;
  public_key: string;
  name: string;
}

export interface MissedCall {
  id: number;
  call_id: CallId;
  from: string;
  at: TimestampMs;
}

export interface CallLogEntry {
  id: number;
  call_id: CallId;
  peer: string;
  outgoing: boolean;
  started_at: TimestampMs;
  answered_at?: TimestampMs;
  ended_at: TimestampMs;
  reason: string;
  path?: string;
}

export interface DeviceProof {
  public_key: string;
  signature: string;
  name?: string;
  /** Browsers cannot read the TLS exporter: the web client never sends this. */
  channel_binding?: "tls_exporter";
}

// ---- requests (client to supernode) ----

type Opt<T> = T | null | undefined;

export type Request =
  | { type: "hello"; version: number; client?: string }
  | { type: "register"; username: string; display_name?: Opt<string>; password: string }
  | {
      type: "login";
      username: string;
      password?: Opt<string>;
      token?: Opt<string>;
      device: DeviceProof;
      quiet?: Opt<boolean>;
    }
  | { type: "logout" }
  | { type: "change_password"; old_password: string; new_password: string }
  | { type: "whoami" }
  | { type: "devices" }
  | { type: "remove_device"; device_id: DeviceId }
  | { type: "set_profile"; display_name?: Opt<string>; discoverable?: Opt<boolean> }
  | { type: "search"; query: string }
  | { type: "contacts"; after?: Opt<string> }
  | { type: "contact_add"; username: string; message?: Opt<string> }
  | { type: "contact_accept"; username: string }
  | { type: "contact_decline"; username: string }
  | { type: "contact_remove"; username: string }
  | { type: "contact_block"; username: string }
  | { type: "set_status"; status: Status }
  | { type: "send_message"; to: string; text: string }
  | { type: "ack_delivered"; ids: MessageId[] }
  | { type: "mark_read"; ids: MessageId[] }
  | { type: "inbox"; limit?: Opt<number>; after?: Opt<MessageId> }
  | { type: "history"; with: string; limit?: Opt<number>; before?: Opt<MessageId> }
  | { type: "ping" }
  | { type: "device_keys"; username: string }
  | { type: "call_invite"; call_id: CallId; to: string; sdp: string; fingerprint_signature: string }
  | { type: "call_ringing"; call_id: CallId }
  | { type: "call_accept"; call_id: CallId; sdp: string; fingerprint_signature: string }
  | {
      type: "call_decline";
      call_id: CallId;
      busy?: Opt<boolean>;
      reason?: Opt<"no_audio_device" | "no_relay">;
    }
  | { type: "call_cancel"; call_id: CallId }
  | { type: "call_hangup"; call_id: CallId }
  | { type: "call_candidate"; call_id: CallId; candidate: string }
  | { type: "call_restart"; call_id: CallId; sdp?: Opt<string> }
  | { type: "call_resume"; call_id: CallId }
  | { type: "turn_credentials" }
  | { type: "ack_missed_calls"; ids: number[] }
  | {
      type: "call_report";
      call_id: CallId;
      peer: string;
      outgoing: boolean;
      started_at: TimestampMs;
      answered_at?: Opt<TimestampMs>;
      ended_at: TimestampMs;
      reason: string;
      path?: Opt<string>;
    }
  | { type: "call_log"; missed?: Opt<boolean>; before?: Opt<number>; limit?: Opt<number> };

export type RequestType = Request["type"];
/** A request as sent: the request's fields beside its `id` and `type`. */
export type ClientFrame = { id: number } & Request;

// ---- replies (the `result` of an `ok` frame) ----

export type Reply =
  | {
      type: "hello";
      version: number;
      server: string;
      nonce: string;
      heartbeat_timeout_secs: number;
      stun_port?: number;
    }
  | { type: "done" }
  | { type: "registered"; username: string }
  | {
      type: "logged_in";
      username: string;
      display_name: string;
      device_id: DeviceId;
      token: string;
      status: Status;
      supernodes?: string[];
    }
  | {
      type: "me";
      username: string;
      display_name: string;
      device_id: DeviceId;
      status: Status;
      discoverable: boolean;
    }
  | { type: "devices"; devices: DeviceInfo[] }
  | { type: "search_results"; users: UserSummary[] }
  | { type: "contacts"; contacts: Contact[]; more?: boolean }
  | { type: "message_sent"; message: ChatMessage }
  | { type: "messages"; messages: ChatMessage[]; more?: boolean }
  | { type: "pong" }
  | { type: "call_log"; calls: CallLogEntry[]; more?: boolean }
  | { type: "device_keys"; username: string; devices: DeviceKey[] }
  | { type: "turn_credentials"; username: string; password: string; ttl_secs: number; urls: string[] }
  | { type: "call_placed"; call_id: CallId; ringing_devices: number };

export type ReplyType = Reply["type"];

// ---- events ----

export type Event =
  | { type: "presence"; username: string; presence: Presence }
  | { type: "contact_request"; username: string; display_name: string; message?: string }
  | { type: "contact_accepted"; username: string }
  | { type: "contact_removed"; username: string }
  | { type: "contact_declined"; username: string }
  | { type: "message"; message: ChatMessage }
  | { type: "receipt"; message_id: MessageId; kind: ReceiptKind; at: TimestampMs }
  | { type: "session_ended"; reason: EndReason }
  | {
      type: "call_incoming";
      call_id: CallId;
      from: string;
      display_name: string;
      device_id: DeviceId;
      device_key: string;
      sdp: string;
      fingerprint_signature: string;
    }
  | { type: "call_ringing"; call_id: CallId }
  | {
      type: "call_accepted";
      call_id: CallId;
      device_id: DeviceId;
      device_key: string;
      sdp: string;
      fingerprint_signature: string;
    }
  | { type: "call_candidate"; call_id: CallId; candidate: string }
  | { type: "call_restart"; call_id: CallId; sdp?: string }
  | { type: "call_ended"; call_id: CallId; reason: CallEndReason }
  | { type: "missed_call"; missed: MissedCall };

export type EventType = Event["type"];

// ---- errors ----

/** Stable error codes; new ones may come within version 1 (treat as a generic failure). */
export type ErrorCode =
  | "bad_request"
  | "unknown_type"
  | "unsupported_version"
  | "hello_required"
  | "frame_too_large"
  | "rate_limited"
  | "too_many_pending"
  | "not_authenticated"
  | "already_authenticated"
  | "invalid_username"
  | "invalid_display_name"
  | "weak_password"
  | "username_taken"
  | "invalid_credentials"
  | "login_throttled"
  | "invalid_token"
  | "invalid_device_signature"
  | "no_such_user"
  | "not_contact"
  | "no_pending_request"
  | "already_contacts"
  | "self_contact"
  | "contact_request_limit"
  | "empty_message"
  | "message_too_long"
  | "invalid_query"
  | "no_such_device"
  | "invalid_argument"
  | "no_such_call"
  | "call_exists"
  | "call_limit"
  | "callee_busy"
  | "callee_unavailable"
  | "shutting_down"
  | "internal"
  | "unavailable"
  | "mailbox_full"
  | "too_many_devices";

export interface ErrorBody {
  code: ErrorCode;
  message: string;
  retry_after_secs?: number;
}

// ---- frames from the supernode ----

export type ServerFrame =
  | { type: "ok"; id: number; result: Reply }
  | { type: "error"; id?: number; error: ErrorBody }
  | { type: "event"; event: Event };

// ---- signed payloads ----

/** The bytes a device signs to log in without channel binding (browsers cannot bind). */
export function loginChallenge(nonce: string): Uint8Array {
  return new TextEncoder().encode("peerline-login-v1:" + nonce);
}

/** The bytes a device signs over its DTLS fingerprint in a call (`call_signature_payload`). */
export function callSignaturePayload(
  callId: CallId,
  role: "offer" | "answer",
  from: string,
  to: string,
  fingerprint: string,
): Uint8Array {
  return new TextEncoder().encode(
    `peerline-call-v1\n${callId}\n${role}\n${from}\n${to}\n${fingerprint.trim()}`,
  );
}
