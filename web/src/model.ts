// The web client's state and everything a user can do, without any view: log in (password or
// saved token), the contact list with presence, requests, search, status, conversations with
// history, unread counts and receipts. The view (app.tsx) renders `state` and calls the actions;
// every change calls the listeners.
import { Call, type CallReport, type CallView } from "./call";
import { Connection, ConnectionClosed, ProtocolError, type ReplyOf } from "./connection";
import { deviceKey, deviceProof, forgetSession, loadSession, saveSession } from "./keystore";
import type { CallLogEntry, ChatMessage, Contact, DeviceInfo, Event, MessageId, MissedCall, Status, UserSummary } from "./protocol";
import { fromHex, safetyNumber } from "./safety";

export type Phase = "loading" | "signed_out" | "signing_in" | "ready";

export interface Me {
  username: string;
  display_name: string;
  status: Status;
}

export interface State {
  phase: Phase;
  /** Why the last sign-in failed, or why the session ended. */
  notice: string;
  me?: Me;
  contacts: Map<string, Contact>;
  /** Each conversation by the other user's username, oldest first, no message twice. */
  conversations: Map<string, ChatMessage[]>;
  /** The conversation shown. */
  open?: string;
  search?: UserSummary[];
  /** A problem with the connection or the last action, shown until the next one. */
  banner: string;
  /** What the main area shows beside the list. */
  view: "chat" | "settings" | "calls";
  /** This account's devices, once the settings asked for them. */
  devices?: DeviceInfo[];
  /** What the last settings action did. */
  settingsNotice: string;
  /** Calls nobody answered, not yet dismissed (on any device). */
  missed: MissedCall[];
  /** Safety numbers of this device with each device of the open contact. */
  safety?: { peer: string; rows: { device_id: number; name: string; number: string }[] };
  /** The account's call log (every device's calls and the missed ones), newest first, once
   * the call history was opened. */
  calls?: CallLogEntry[];
  /** The call on screen (one at a time), until the user closes its end screen. */
  call?: CallView;
}

const EMPTY = (): Omit<State, "phase" | "notice"> => ({
  contacts: new Map(),
  conversations: new Map(),
  banner: "",
  view: "chat",
  settingsNotice: "",
  missed: [],
});

/** Where the "always relay calls" setting is kept (not a secret; per browser). */
const RELAY_ONLY = "peerline.relay_only";

/** How a failed request reads to a person. */
export function explain(e: unknown): string {
  if (e instanceof ProtocolError) {
    const wait = e.body.retry_after_secs ? ` Try again in ${e.body.retry_after_secs} s.` : "";
    switch (e.code) {
      case "invalid_credentials":
        return "Wrong username or password.";
      case "username_taken":
        return "That username is taken; choose another.";
      case "login_throttled":
      case "rate_limited":
        return `Too many attempts.${wait}`;
      default:
        // The supernode's message says what happened (the code is for programs).
        return e.message + (e.message.endsWith(".") ? "" : ".") + wait;
    }
  }
  if (e instanceof ConnectionClosed) return "The connection to the supernode was lost.";
  return e instanceof Error ? e.message : String(e);
}

export class Peerline {
  state: State = { phase: "loading", notice: "", ...EMPTY() };
  private conn?: Connection;
  private listeners = new Set<() => void>();
  /** Which conversation each message id belongs to, for receipts. */
  private peerOf = new Map<MessageId, string>();
  private reconnectTimer?: number;
  private reconnectDelay = 1000;
  private signedOut = false;
  private call?: Call;
  /** Calls whose end was handled (reported to the call log once). */
  private reported = new Set<string>();
  /** The supernode's STUN port, from the hello of this connection. */
  private stunPort?: number;

  subscribe(f: () => void): () => void {
    this.listeners.add(f);
    return () => this.listeners.delete(f);
  }

  private set(patch: Partial<State>): void {
    this.state = { ...this.state, ...patch };
    for (const f of this.listeners) f();
  }

  /** At page load: log in with the saved session, or ask for the password. */
  async start(): Promise<void> {
    document.addEventListener("visibilitychange", () => this.markOpenRead());
    const saved = await loadSession().catch(() => undefined);
    if (!saved) return this.set({ phase: "signed_out" });
    this.set({ phase: "signing_in" });
    try {
      await this.signIn(saved.username, { token: saved.token });
    } catch (e) {
      if (e instanceof ProtocolError && e.code === "invalid_token") await forgetSession();
      this.set({ phase: "signed_out", notice: e instanceof ProtocolError && e.code === "invalid_token" ? "Your session ended; log in again." : explain(e) });
    }
  }

  async register(username: string, password: string, displayName: string): Promise<void> {
    this.set({ phase: "signing_in", notice: "" });
    try {
      const [conn] = await Connection.open();
      try {
        await conn.ask({ type: "register", username, password, display_name: displayName.trim() || null }, "registered");
      } finally {
        conn.close();
      }
      await this.signIn(username, { password });
    } catch (e) {
      this.set({ phase: "signed_out", notice: explain(e) });
    }
  }

  async login(username: string, password: string): Promise<void> {
    this.set({ phase: "signing_in", notice: "" });
    try {
      await this.signIn(username, { password });
    } catch (e) {
      this.set({ phase: "signed_out", notice: explain(e) });
    }
  }

  async logout(): Promise<void> {
    this.signedOut = true;
    await this.conn?.request({ type: "logout" }).catch(() => {});
    this.conn?.close();
    await forgetSession().catch(() => {});
    this.reset("signed_out", "");
  }

  private reset(phase: Phase, notice: string): void {
    this.conn = undefined;
    this.peerOf.clear();
    this.state = { phase, notice, ...EMPTY() };
    this.set({});
  }

  /** Connects, proves the device key, logs in; then loads the contact list. */
  private async signIn(username: string, credential: { password: string } | { token: string }): Promise<void> {
    const [conn, hello] = await Connection.open();
    const key = await deviceKey();
    const device = await deviceProof(key, hello.nonce);
    // Events pushed right after logged_in (presence, queued messages) wait for the login's
    // answer to be handled first.
    const early: Event[] = [];
    let ready = false;
    conn.onEvent = (e) => (ready ? this.handle(e) : early.push(e));
    conn.onClose = () => this.lost(conn);
    let reply: ReplyOf<"logged_in">;
    try {
      reply = await conn.ask({ type: "login", username, ...credential, device }, "logged_in");
    } catch (e) {
      conn.onClose = () => {};
      conn.close();
      throw e;
    }
    await saveSession({ username: reply.username, token: reply.token });
    this.conn = conn;
    this.stunPort = hello.stun_port;
    // An answered call that outlived the old connection is taken over on this one.
    if (this.call?.active) void this.call.resume(conn);
    this.signedOut = false;
    this.reconnectDelay = 1000;
    const me = { username: reply.username, display_name: reply.display_name, status: reply.status };
    this.set({ phase: "ready", notice: "", banner: "", me });
    await this.loadContacts();
    ready = true;
    for (const e of early) this.handle(e);
    if (this.state.open) await this.openChat(this.state.open);
  }

  /** The connection closed: unless the user signed out, log in again with the token. */
  private lost(conn: Connection): void {
    if (this.conn === conn) this.call?.lost();
    if (this.conn !== conn || this.signedOut || this.state.phase !== "ready") return;
    this.set({ banner: "Connection lost; reconnecting…" });
    window.clearTimeout(this.reconnectTimer);
    this.reconnectTimer = window.setTimeout(async () => {
      const saved = await loadSession().catch(() => undefined);
      if (!saved || this.signedOut) return this.reset("signed_out", "Your session ended; log in again.");
      try {
        await this.signIn(saved.username, { token: saved.token });
      } catch (e) {
        if (e instanceof ProtocolError && e.code === "invalid_token") {
          await forgetSession().catch(() => {});
          return this.reset("signed_out", "Your session ended; log in again.");
        }
        this.reconnectDelay = Math.min(this.reconnectDelay * 2, 30000);
        this.lost(conn);
      }
    }, this.reconnectDelay);
  }

  private async loadContacts(): Promise<void> {
    const conn = this.conn;
    if (!conn) return;
    const contacts = new Map<string, Contact>();
    let after: string | undefined;
    for (;;) {
      const page = await conn.ask({ type: "contacts", after }, "contacts");
      for (const c of page.contacts) contacts.set(c.username, c);
      const last = page.contacts[page.contacts.length - 1];
      if (!page.more || !last) break;
      after = last.username;
    }
    // Presence events may have come while the list loaded: keep what they said.
    for (const [name, old] of this.state.contacts) {
      const c = contacts.get(name);
      if (c && c.state === "accepted" && old.state === "accepted") c.presence = old.presence;
    }
    this.set({ contacts });
  }

  private handle(e: Event): void {
    const contacts = new Map(this.state.contacts);
    switch (e.type) {
      case "presence": {
        const c = contacts.get(e.username);
        if (c) contacts.set(e.username, { ...c, presence: e.presence });
        return this.set({ contacts });
      }
      case "contact_request":
        contacts.set(e.username, {
          username: e.username,
          display_name: e.display_name,
          state: "incoming",
          presence: "offline",
          message: e.message,
        });
        return this.set({ contacts });
      case "contact_accepted":
      case "contact_removed":
      case "contact_declined":
        if (e.type !== "contact_accepted") contacts.delete(e.username);
        this.set({ contacts });
        void this.loadContacts().catch(() => {});
        return;
      case "message":
        this.addMessages([e.message]);
        if (e.message.to === this.state.me?.username) {
          void this.conn?.request({ type: "ack_delivered", ids: [e.message.id] }).catch(() => {});
          this.markOpenRead();
          this.notify(e.message.from, e.message.text);
        }
        return;
      case "missed_call":
        if (!this.state.missed.some((m) => m.id === e.missed.id)) this.set({ missed: [...this.state.missed, e.missed] });
        this.notify(e.missed.from, "Missed call");
        return;
      case "receipt": {
        const peer = this.peerOf.get(e.message_id);
        const list = peer && this.state.conversations.get(peer);
        if (!peer || !list) return;
        const field = e.kind === "read" ? "read_at" : "delivered_at";
        const updated = list.map((m) =>
          m.id === e.message_id
            ? { ...m, [field]: e.at, ...(e.kind === "read" && !m.delivered_at ? { delivered_at: e.at } : {}) }
            : m,
        );
        const conversations = new Map(this.state.conversations);
        conversations.set(peer, updated);
        return this.set({ conversations });
      }
      case "session_ended":
        if (e.reason === "logged_out" || e.reason === "device_removed" || e.reason === "password_changed") {
          this.signedOut = true;
          void forgetSession().catch(() => {});
          this.conn?.close();
          const why = e.reason === "logged_out" ? "You logged out." : e.reason === "device_removed" ? "This device was removed from your account." : "Your password was changed on another device; log in again.";
          this.reset("signed_out", why);
        }
        return;
      case "call_incoming":
        void this.ring(e);
        return;
      case "call_ringing":
      case "call_accepted":
      case "call_candidate":
      case "call_restart":
      case "call_ended":
        // Events of a call this device does not know (given up, answered elsewhere) are ignored.
        if (this.call && this.call.id === e.call_id) void this.call.handle(e);
        return;
      default:
        // Event types added later in version 1 are ignored.
        return;
    }
  }

  /** Adds messages to their conversations, each once (a message may come again after a reconnect). */
  private addMessages(messages: ChatMessage[]): void {
    const me = this.state.me?.username;
    const conversations = new Map(this.state.conversations);
    for (const m of messages) {
      const peer = m.from === me ? m.to : m.from;
      this.peerOf.set(m.id, peer);
      const list = [...(conversations.get(peer) ?? [])];
      const at = list.findIndex((x) => x.id === m.id);
      if (at >= 0) list[at] = { ...list[at], ...m };
      else list.push(m);
      list.sort((a, b) => a.id - b.id);
      conversations.set(peer, list);
    }
    this.set({ conversations });
  }

  /** Unread messages from `peer`: received and not yet marked read. */
  unread(peer: string): number {
    return (this.state.conversations.get(peer) ?? []).filter((m) => m.from === peer && !m.read_at).length;
  }

  /** Marks the open conversation read, when the user can see it. */
  private markOpenRead(): void {
    const peer = this.state.open;
    if (!peer || document.visibilityState !== "visible" || !this.conn) return;
    const list = this.state.conversations.get(peer) ?? [];
    const ids = list.filter((m) => m.from === peer && !m.read_at).map((m) => m.id);
    if (!ids.length) return;
    void this.conn.request({ type: "mark_read", ids }).catch(() => {});
    const now = Date.now();
    const conversations = new Map(this.state.conversations);
    conversations.set(peer, list.map((m) => (ids.includes(m.id) ? { ...m, read_at: now } : m)));
    this.set({ conversations });
  }

  async openChat(peer: string): Promise<void> {
    this.set({ open: peer, banner: "", view: "chat", safety: this.state.safety?.peer === peer ? this.state.safety : undefined });
    await this.act(async (conn) => {
      const page = await conn.ask({ type: "history", with: peer, limit: 50 }, "messages");
      this.addMessages(page.messages);
      this.markOpenRead();
    });
  }

  closeChat(): void {
    this.set({ open: undefined, safety: undefined });
  }

  /** A desktop notification, when the tab is hidden and the user allowed them. The text is
   * shown by the system as plain text. */
  private notify(from: string, body: string): void {
    if (typeof Notification === "undefined" || Notification.permission !== "granted") return;
    if (document.visibilityState === "visible") return;
    const name = this.state.contacts.get(from)?.display_name ?? from;
    try {
      new Notification(name, { body: body.slice(0, 200), tag: `peerline-${from}` });
    } catch {
      // Some browsers only allow notifications from a service worker; nothing to do then.
    }
  }

  private async ring(e: Extract<Event, { type: "call_incoming" }>): Promise<void> {
    const conn = this.conn;
    const me = this.state.me?.username;
    if (!conn || !me) return;
    if (this.call?.active) {
      // In a call already: this device is busy (others of the account may still answer).
      void conn.request({ type: "call_decline", call_id: e.call_id, busy: true }).catch(() => {});
      return;
    }
    const call: Call = Call.incoming(conn, me, e, () => this.callChanged(call));
    this.call = call;
    this.set({ call: call.view });
    this.notify(e.from, "Incoming call");
  }

  /** Calls the open contact. */
  async placeCall(peer: string): Promise<void> {
    const conn = this.conn;
    const me = this.state.me?.username;
    if (!conn || !me || this.call?.active) return;
    const call: Call = Call.place(conn, me, peer, this.stunPort, this.relayOnly, () => this.callChanged(call));
    this.call = call;
    this.set({ call: call.view });
  }

  /** The "Test call": calls the network's echo service (user `echo`), which plays back what it
   * hears two seconds later; asks it to be a contact first (it accepts everyone). */
  async testCall(): Promise<void> {
    const echo = "echo";
    if (this.state.contacts.get(echo)?.state !== "accepted") {
      if (!this.state.contacts.has(echo) && !(await this.addContact(echo, ""))) return;
      const deadline = Date.now() + 15000;
      while (this.state.contacts.get(echo)?.state !== "accepted") {
        if (Date.now() > deadline) return this.set({ banner: "The echo service did not answer; is it running on this network?" });
        await new Promise((r) => setTimeout(r, 200));
      }
    }
    await this.openChat(echo);
    await this.placeCall(echo);
  }

  acceptCall = () => void this.call?.accept(this.stunPort, this.relayOnly);
  declineCall = () => this.call?.decline();
  hangUp = () => this.call?.hangUp();
  toggleMute = () => this.call?.toggleMute();

  /** A call changed: show it (if it is the one on screen); once it ended, add it to the call
   * log. */
  private callChanged(call: Call): void {
    if (this.call === call) this.set({ call: call.view });
    if (call.active || this.reported.has(call.id)) return;
    this.reported.add(call.id);
    const report = call.report();
    if (report) void this.sendReport(report);
    else if (this.state.view === "calls") void this.loadCalls();
  }

  /** Adds a call to the account's call log; a failure costs only the log entry, never the call. */
  private async sendReport(report: CallReport): Promise<void> {
    try {
      await this.conn?.ask(report, "done");
    } catch {
      // Nothing to do: the call itself is over.
    }
    if (this.state.view === "calls") await this.loadCalls();
  }

  /** Shows the call history: every call of the account (any device), newest first. */
  showCalls(): Promise<boolean> {
    this.set({ view: "calls" });
    return this.loadCalls();
  }

  private loadCalls(): Promise<boolean> {
    return this.act(async (conn) => {
      const reply = await conn.ask({ type: "call_log", limit: 50 }, "call_log");
      this.set({ calls: reply.calls });
    });
  }

  /** Closes the end screen of a finished call. */
  closeCall(): void {
    if (this.call?.active) return;
    this.call = undefined;
    this.set({ call: undefined });
  }

  /** What the other side of the call sends, for an <audio> element. */
  callStream(): MediaStream | undefined {
    return this.call?.remoteStream;
  }

  /** Asks the browser for permission to show notifications (needs a click). */
  async enableNotifications(): Promise<void> {
    if (typeof Notification === "undefined") return this.set({ settingsNotice: "This browser has no notifications." });
    const answer = await Notification.requestPermission();
    this.set({ settingsNotice: answer === "granted" ? "Notifications are on." : "Notifications are off (the browser refused)." });
  }

  dismissMissed(): Promise<boolean> {
    const ids = this.state.missed.map((m) => m.id);
    return this.act(async (conn) => {
      await conn.ask({ type: "ack_missed_calls", ids }, "done");
      this.set({ missed: this.state.missed.filter((m) => !ids.includes(m.id)) });
    });
  }

  get relayOnly(): boolean {
    return localStorage.getItem(RELAY_ONLY) === "1";
  }

  set relayOnly(on: boolean) {
    localStorage.setItem(RELAY_ONLY, on ? "1" : "0");
    this.set({});
  }

  showSettings(): Promise<boolean> {
    this.set({ view: "settings", settingsNotice: "" });
    return this.loadDevices();
  }

  showChat(): void {
    this.set({ view: "chat" });
  }

  private loadDevices(): Promise<boolean> {
    return this.act(async (conn) => {
      const reply = await conn.ask({ type: "devices" }, "devices");
      this.set({ devices: reply.devices });
    });
  }

  async removeDevice(device_id: number): Promise<void> {
    if (await this.act((conn) => conn.ask({ type: "remove_device", device_id }, "done").then(() => {}))) {
      this.set({ settingsNotice: "Device removed." });
      await this.loadDevices();
    }
  }

  async changePassword(old_password: string, new_password: string): Promise<boolean> {
    const conn = this.conn;
    if (!conn) return false;
    try {
      await conn.ask({ type: "change_password", old_password, new_password }, "done");
      this.set({ settingsNotice: "Password changed. Your other devices must log in again." });
      return true;
    } catch (e) {
      this.set({ settingsNotice: explain(e) });
      return false;
    }
  }

  /** The safety numbers of this device with each device of `peer` (compare them with what
   * `peerline verify` or the other browser shows). */
  showSafety(peer: string): Promise<boolean> {
    return this.act(async (conn) => {
      const me = this.state.me?.username ?? "";
      const mine = await deviceKey();
      const keys = await conn.ask({ type: "device_keys", username: peer }, "device_keys");
      const rows = [];
      for (const d of keys.devices) {
        const number = await safetyNumber(me, fromHex(mine.publicKey), keys.username, fromHex(d.public_key));
        rows.push({ device_id: d.device_id, name: d.name, number });
      }
      this.set({ safety: { peer, rows } });
    });
  }

  async send(text: string): Promise<boolean> {
    const to = this.state.open;
    if (!to || !text.trim()) return false;
    return this.act(async (conn) => {
      const sent = await conn.ask({ type: "send_message", to, text }, "message_sent");
      this.addMessages([sent.message]);
    });
  }

  setStatus(status: Status): Promise<boolean> {
    return this.act(async (conn) => {
      await conn.ask({ type: "set_status", status }, "done");
      if (this.state.me) this.set({ me: { ...this.state.me, status } });
    });
  }

  search(query: string): Promise<boolean> {
    return this.act(async (conn) => {
      const found = await conn.ask({ type: "search", query }, "search_results");
      this.set({ search: found.users });
    });
  }

  addContact(username: string, greeting: string): Promise<boolean> {
    return this.contactAction({ type: "contact_add", username, message: greeting.trim() || null });
  }
  accept = (username: string) => this.contactAction({ type: "contact_accept", username });
  decline = (username: string) => this.contactAction({ type: "contact_decline", username });
  remove = (username: string) => this.contactAction({ type: "contact_remove", username });
  block = (username: string) => this.contactAction({ type: "contact_block", username });

  private contactAction(request: Parameters<Connection["request"]>[0]): Promise<boolean> {
    return this.act(async (conn) => {
      await conn.ask(request, "done");
      await this.loadContacts();
    });
  }

  /** Runs an action on the live connection; a failure shows in the banner. */
  private async act(f: (conn: Connection) => Promise<void>): Promise<boolean> {
    const conn = this.conn;
    if (!conn) {
      this.set({ banner: "Not connected to the supernode." });
      return false;
    }
    try {
      await f(conn);
      return true;
    } catch (e) {
      this.set({ banner: explain(e) });
      return false;
    }
  }
}
