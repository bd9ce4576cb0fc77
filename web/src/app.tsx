// The web client's screens: sign-in, then the contact list (requests, search, status) beside the
// open conversation. Every string that came from another user (names, greetings, messages) is
// rendered as text by Preact — never as HTML — inside <bdi>, so right-to-left text cannot
// reorder what is around it. The accessible names of the fields and buttons ("Username",
// "Password", "Message", "Register", "Log in", "Accept", "Decline", "Call", …) are part of the
// contract with screen readers and with the browser tests.
import { useEffect, useRef, useState } from "preact/hooks";
import type { CallLogEntry, ChatMessage, Contact, DeviceInfo, Presence, Status } from "./protocol";
import type { Peerline, State } from "./model";

function useModel(model: Peerline): State {
  const [state, setState] = useState(model.state);
  useEffect(() => {
    const unsubscribe = model.subscribe(() => setState(model.state));
    // Effects run after the first paint: a change the model made between the first render and
    // this subscription (a quick IndexedDB answer at page load) would otherwise be lost, and the
    // page would stay on "Loading…".
    setState(model.state);
    return unsubscribe;
  }, [model]);
  return state;
}

export function App({ model }: { model: Peerline }) {
  const state = useModel(model);
  if (state.phase === "loading") return <p class="center">Loading…</p>;
  if (state.phase !== "ready" || !state.me) return <SignIn model={model} state={state} />;
  return <Main model={model} state={state} />;
}

function SignIn({ model, state }: { model: Peerline; state: State }) {
  const [username, setUsername] = useState("");
  const [password, setPassword] = useState("");
  const [displayName, setDisplayName] = useState("");
  const busy = state.phase === "signing_in";
  return (
    <main class="signin">
      <h1>Peerline</h1>
      <form
        onSubmit={(e) => {
          e.preventDefault();
          void model.login(username, password);
        }}
      >
        <label>
          Username
          <input
            name="username"
            autocomplete="username"
            autocapitalize="none"
            spellcheck={false}
            required
            value={username}
            onInput={(e) => setUsername(e.currentTarget.value)}
          />
        </label>
        <label>
          Password
          <input
            name="password"
            type="password"
            autocomplete="current-password"
            required
            value={password}
            onInput={(e) => setPassword(e.currentTarget.value)}
          />
        </label>
        <label>
          Display name
          <input
            name="display_name"
            autocomplete="nickname"
            placeholder="for a new account (optional)"
            value={displayName}
            onInput={(e) => setDisplayName(e.currentTarget.value)}
          />
        </label>
        <div class="row">
          <button type="submit" disabled={busy}>
            Log in
          </button>
          <button
            type="button"
            class="secondary"
            disabled={busy}
            onClick={(e) => {
              const form = e.currentTarget.form;
              if (form && !form.reportValidity()) return;
              void model.register(username, password, displayName);
            }}
          >
            Register
          </button>
        </div>
        <p role="status" class="notice">
          {busy ? "Connecting…" : state.notice}
        </p>
      </form>
      <p class="hint">Your password is never stored in this browser; a session token and a device key are.</p>
    </main>
  );
}

const STATUSES: Status[] = ["online", "away", "busy", "invisible"];

function Main({ model, state }: { model: Peerline; state: State }) {
  const me = state.me!;
  const open = state.open ? state.contacts.get(state.open) : undefined;
  return (
    <div class={`layout ${open || state.view !== "chat" ? "chatting" : ""}`}>
      <header class="top">
        <span class="brand">Peerline</span>
        <span class="me">
          <bdi>{me.display_name}</bdi> <span class="muted">@{me.username}</span>
        </span>
        <label class="status">
          Status
          <select value={me.status} onChange={(e) => void model.setStatus(e.currentTarget.value as Status)}>
            {STATUSES.map((s) => (
              <option value={s}>{s}</option>
            ))}
          </select>
        </label>
        <button
          type="button"
          class="secondary"
          aria-pressed={state.view === "calls"}
          onClick={() => (state.view === "calls" ? model.showChat() : void model.showCalls())}
        >
          Call history
        </button>
        <button
          type="button"
          class="secondary"
          aria-pressed={state.view === "settings"}
          onClick={() => (state.view === "settings" ? model.showChat() : void model.showSettings())}
        >
          Settings
        </button>
        <button type="button" class="secondary" onClick={() => void model.logout()}>
          Log out
        </button>
      </header>
      {state.banner && (
        <p role="alert" class="banner">
          {state.banner}
        </p>
      )}
      <nav class="side" aria-label="Contacts">
        <p class="row test-call">
          <button type="button" class="secondary" disabled={Boolean(state.call?.phase && state.call.phase !== "ended")} onClick={() => void model.testCall()}>
            Test call
          </button>
          <span class="muted">hear yourself through the echo service</span>
        </p>
        <MissedCalls model={model} state={state} />
        <Requests model={model} state={state} />
        <ContactList model={model} state={state} />
        <Search model={model} state={state} />
      </nav>
      <main class="chat">
        {state.call && <CallPanel model={model} state={state} />}
        {state.view === "settings" ? (
          <Settings model={model} state={state} />
        ) : state.view === "calls" ? (
          <CallHistory model={model} state={state} />
        ) : open ? (
          <Chat model={model} state={state} contact={open} />
        ) : (
          <p class="center muted">Choose a contact to chat with.</p>
        )}
      </main>
    </div>
  );
}

function Dot({ presence }: { presence: Presence }) {
  return (
    <span class={`dot ${presence}`} title={presence}>
      <span class="sr-only">{presence}</span>
    </span>
  );
}

function Requests({ model, state }: { model: Peerline; state: State }) {
  const all = [...state.contacts.values()];
  const incoming = all.filter((c) => c.state === "incoming");
  const outgoing = all.filter((c) => c.state === "outgoing");
  if (!incoming.length && !outgoing.length) return null;
  return (
    <section aria-labelledby="requests-h">
      <h2 id="requests-h">Requests</h2>
      <ul class="list">
        {incoming.map((c) => (
          <li class="request" data-username={c.username}>
            <Name contact={c} />
            {c.message && (
              <p class="greeting">
                <bdi>{c.message}</bdi>
              </p>
            )}
            <div class="row">
              <button type="button" onClick={() => void model.accept(c.username)}>
                Accept
              </button>
              <button type="button" class="secondary" onClick={() => void model.decline(c.username)}>
                Decline
              </button>
            </div>
          </li>
        ))}
        {outgoing.map((c) => (
          <li class="request" data-username={c.username}>
            <Name contact={c} />
            <p class="muted">Waiting for an answer</p>
            <button type="button" class="secondary" onClick={() => void model.remove(c.username)}>
              Cancel request
            </button>
          </li>
        ))}
      </ul>
    </section>
  );
}

function Name({ contact }: { contact: Contact }) {
  return (
    <span class="name">
      <bdi class="display">{contact.display_name}</bdi> <span class="muted">@{contact.username}</span>
    </span>
  );
}

function ContactList({ model, state }: { model: Peerline; state: State }) {
  const all = [...state.contacts.values()];
  const accepted = all.filter((c) => c.state === "accepted");
  const blocked = all.filter((c) => c.state === "blocked");
  return (
    <section aria-labelledby="contacts-h">
      <h2 id="contacts-h">Contacts</h2>
      {accepted.length === 0 && <p class="muted">No contacts yet: search for someone below.</p>}
      <ul class="list">
        {accepted.map((c) => {
          const unread = model.unread(c.username);
          return (
            <li class="entry" data-username={c.username} data-presence={c.presence}>
              <button
                type="button"
                class={`contact ${state.open === c.username ? "selected" : ""}`}
                aria-current={state.open === c.username ? "true" : undefined}
                onClick={() => void model.openChat(c.username)}
              >
                <Dot presence={c.presence} />
                <Name contact={c} />
                {unread > 0 && (
                  <span class="badge" data-unread={unread}>
                    {unread}
                    <span class="sr-only"> unread</span>
                  </span>
                )}
              </button>
            </li>
          );
        })}
      </ul>
      {blocked.length > 0 && (
        <details>
          <summary>Blocked ({blocked.length})</summary>
          <ul class="list">
            {blocked.map((c) => (
              <li class="entry blocked" data-username={c.username}>
                <Name contact={c} />
                <button type="button" class="secondary" onClick={() => void model.remove(c.username)}>
                  Unblock
                </button>
              </li>
            ))}
          </ul>
        </details>
      )}
    </section>
  );
}

function Search({ model, state }: { model: Peerline; state: State }) {
  const [query, setQuery] = useState("");
  const [greeting, setGreeting] = useState("");
  return (
    <section aria-labelledby="search-h">
      <h2 id="search-h">Find people</h2>
      <form
        class="row"
        onSubmit={(e) => {
          e.preventDefault();
          void model.search(query);
        }}
      >
        <label class="grow">
          <span class="sr-only">Search users</span>
          <input type="search" placeholder="Username or name" aria-label="Search users" value={query} onInput={(e) => setQuery(e.currentTarget.value)} />
        </label>
        <button type="submit">Search</button>
      </form>
      {state.search && (
        <>
          <label>
            Greeting
            <input maxLength={256} placeholder="optional, sent with a request" value={greeting} onInput={(e) => setGreeting(e.currentTarget.value)} />
          </label>
          {state.search.length === 0 && <p class="muted">Nobody found.</p>}
          <ul class="list">
            {state.search.map((u) => (
              <li data-username={u.username}>
                <span class="name">
                  <bdi class="display">{u.display_name}</bdi> <span class="muted">@{u.username}</span>
                </span>
                {state.contacts.has(u.username) ? (
                  <span class="muted">in your list</span>
                ) : (
                  <button type="button" onClick={() => void model.addContact(u.username, greeting)}>
                    Add contact
                  </button>
                )}
              </li>
            ))}
          </ul>
        </>
      )}
    </section>
  );
}

function Receipt({ m }: { m: ChatMessage }) {
  const [word, mark] = m.read_at ? ["Read", "✓✓"] : m.delivered_at ? ["Delivered", "✓✓"] : ["Sent", "✓"];
  return (
    <span class={`receipt ${word.toLowerCase()}`} data-receipt={word.toLowerCase()} title={word}>
      <span aria-hidden="true">{mark}</span> {word}
    </span>
  );
}

function Chat({ model, state, contact }: { model: Peerline; state: State; contact: Contact }) {
  const [text, setText] = useState("");
  const list = state.conversations.get(contact.username) ?? [];
  const me = state.me!.username;
  const end = useRef<HTMLLIElement>(null);
  useEffect(() => end.current?.scrollIntoView({ block: "end" }), [list.length]);
  return (
    <section class="conversation" aria-labelledby="chat-h">
      <header class="chat-head">
        <button type="button" class="secondary back" onClick={() => model.closeChat()}>
          Back
        </button>
        <h2 id="chat-h">
          <Dot presence={contact.presence} /> <bdi>{contact.display_name}</bdi>{" "}
          <span class="muted presence">{contact.presence}</span>
        </h2>
        <div class="row actions">
          <button type="button" disabled={Boolean(state.call && state.call.phase !== "ended")} onClick={() => void model.placeCall(contact.username)}>
            Call
          </button>
          <button type="button" class="secondary" onClick={() => void model.showSafety(contact.username)}>
            Safety number
          </button>
          <button type="button" class="secondary" onClick={() => void model.remove(contact.username).then(() => model.closeChat())}>
            Remove
          </button>
          <button type="button" class="secondary" onClick={() => void model.block(contact.username).then(() => model.closeChat())}>
            Block
          </button>
        </div>
      </header>
      {state.safety?.peer === contact.username && (
        <section class="safety" aria-label="Safety numbers">
          <p>
            Compare these numbers with the ones <bdi>{contact.display_name}</bdi> sees (in the CLI: <code>peerline verify {contact.username}</code>). If
            they match, nobody is in the middle.
          </p>
          <ul class="list">
            {state.safety.rows.map((r) => (
              <li data-device={r.device_id}>
                <span class="muted">
                  <bdi>{r.name || `device ${r.device_id}`}</bdi>
                </span>
                <code class="digits">{r.number}</code>
              </li>
            ))}
          </ul>
        </section>
      )}
      <ol class="messages" aria-live="polite" aria-label={`Messages with ${contact.username}`}>
        {list.map((m) => (
          <li class={`msg ${m.from === me ? "out" : "in"}`} data-id={m.id}>
            <p class="text">
              <bdi>{m.text}</bdi>
            </p>
            <span class="meta">
              <time dateTime={new Date(m.sent_at).toISOString()}>{new Date(m.sent_at).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })}</time>
              {m.from === me && <Receipt m={m} />}
            </span>
          </li>
        ))}
        <li ref={end} class="end" aria-hidden="true" />
      </ol>
      <form
        class="compose"
        onSubmit={async (e) => {
          e.preventDefault();
          if (await model.send(text)) setText("");
        }}
      >
        <label class="grow">
          <span class="sr-only">Message</span>
          <textarea
            aria-label="Message"
            rows={2}
            maxLength={4096}
            value={text}
            onInput={(e) => setText(e.currentTarget.value)}
            onKeyDown={(e) => {
              if (e.key === "Enter" && !e.shiftKey) {
                e.preventDefault();
                e.currentTarget.form?.requestSubmit();
              }
            }}
          />
        </label>
        <button type="submit">Send</button>
      </form>
    </section>
  );
}

function MissedCalls({ model, state }: { model: Peerline; state: State }) {
  if (!state.missed.length) return null;
  return (
    <section aria-labelledby="missed-h">
      <h2 id="missed-h">Missed calls</h2>
      <ul class="list">
        {state.missed.map((m) => (
          <li data-call={m.call_id}>
            <bdi>{state.contacts.get(m.from)?.display_name ?? m.from}</bdi>
            <time class="muted" dateTime={new Date(m.at).toISOString()}>
              {new Date(m.at).toLocaleString()}
            </time>
          </li>
        ))}
      </ul>
      <button type="button" class="secondary" onClick={() => void model.dismissMissed()}>
        Dismiss missed calls
      </button>
    </section>
  );
}

function Device({ model, d }: { model: Peerline; d: DeviceInfo }) {
  return (
    <li data-device={d.id}>
      <span class="name">
        <bdi>{d.name || `device ${d.id}`}</bdi>
        {d.current && <strong> (this browser)</strong>}
        <span class="muted">
          {" "}
          · {d.online ? "online now" : `last seen ${new Date(d.last_seen_at).toLocaleString()}`}
        </span>
      </span>
      <button type="button" class="secondary" onClick={() => void model.removeDevice(d.id)}>
        {d.current ? "Remove this device" : "Remove device"}
      </button>
    </li>
  );
}

function Settings({ model, state }: { model: Peerline; state: State }) {
  const [old, setOld] = useState("");
  const [fresh, setFresh] = useState("");
  return (
    <section class="settings" aria-labelledby="settings-h">
      <h2 id="settings-h">Settings</h2>
      <p role="status" class="notice-ok">
        {state.settingsNotice}
      </p>
      <h3>Devices</h3>
      <ul class="list">{state.devices?.map((d) => <Device model={model} d={d} />)}</ul>
      <h3>Change password</h3>
      <form
        onSubmit={async (e) => {
          e.preventDefault();
          if (await model.changePassword(old, fresh)) {
            setOld("");
            setFresh("");
          }
        }}
      >
        <label>
          Current password
          <input type="password" autocomplete="current-password" required value={old} onInput={(e) => setOld(e.currentTarget.value)} />
        </label>
        <label>
          New password
          <input
            type="password"
            autocomplete="new-password"
            required
            minLength={8}
            value={fresh}
            onInput={(e) => setFresh(e.currentTarget.value)}
          />
        </label>
        <button type="submit">Change password</button>
      </form>
      <h3>Calls</h3>
      <label class="check">
        <input type="checkbox" checked={model.relayOnly} onChange={(e) => (model.relayOnly = e.currentTarget.checked)} />
        Always relay calls (hides your address from the people you call; needs a TURN relay)
      </label>
      <h3>Notifications</h3>
      <button type="button" class="secondary" onClick={() => void model.enableNotifications()}>
        Enable notifications
      </button>
    </section>
  );
}

/** A call log reason in words (the CLI's `peerline calls` says the same). */
const LOG_REASONS: Record<string, string> = {
  hung_up_here: "you hung up",
  hung_up: "they hung up",
  cancelled_here: "you cancelled",
  declined_here: "you declined",
  missed: "not answered",
  declined: "declined",
  busy: "busy",
  cancelled: "cancelled",
  no_answer: "no answer",
  unavailable: "not online",
  answered_elsewhere: "answered on another device",
  no_audio_device: "no microphone",
  no_relay: "no relay available",
  no_media_path: "no media path",
  media_path_lost: "connection lost",
  peer_closed_media: "connection lost",
  peer_gone: "connection lost",
  supernode_lost: "connection lost",
  identity_changed: "refused: identity changed",
};

/** The reasons of incoming calls that rang and were not answered anywhere. */
const UNANSWERED = new Set(["missed", "cancelled", "no_answer", "unavailable"]);

function CallHistory({ model, state }: { model: Peerline; state: State }) {
  const calls = state.calls;
  return (
    <section class="settings history" aria-labelledby="history-h">
      <h2 id="history-h">Call history</h2>
      {calls && calls.length === 0 && <p class="muted">No calls yet.</p>}
      <ul class="list">
        {calls?.map((c) => (
          <CallEntry model={model} state={state} c={c} />
        ))}
      </ul>
    </section>
  );
}

function CallEntry({ state, c }: { model: Peerline; state: State; c: CallLogEntry }) {
  // Missed: rang here and nobody answered (not one this device declined or could not take).
  const direction = c.outgoing ? "outgoing" : c.answered_at === undefined && UNANSWERED.has(c.reason) ? "missed" : "incoming";
  const talked = c.answered_at !== undefined ? Math.max(0, c.ended_at - c.answered_at) : undefined;
  const name = state.contacts.get(c.peer)?.display_name || c.peer;
  return (
    <li
      class={`logged ${direction}`}
      data-call={c.call_id}
      data-direction={direction}
      data-seconds={talked === undefined ? undefined : Math.floor(talked / 1000)}
      data-path={c.path ?? ""}
      data-reason={c.reason}
    >
      <span class="name">
        <strong>{direction === "outgoing" ? "Outgoing" : direction === "incoming" ? "Incoming" : "Missed"}</strong>{" "}
        {direction === "outgoing" ? "to" : "from"} <bdi>{name}</bdi> <span class="muted">@{c.peer}</span>
        <span class="muted">
          {" · "}
          <time dateTime={new Date(c.started_at).toISOString()}>{new Date(c.started_at).toLocaleString()}</time>
          {talked !== undefined && ` · ${duration(talked)}`}
          {c.path === "direct" ? " · direct" : c.path === "relay" ? " · through a relay" : ""}
          {" · "}
          {LOG_REASONS[c.reason] ?? c.reason.replace(/_/g, " ")}
        </span>
      </span>
    </li>
  );
}

const PHASES: Record<string, string> = {
  calling: "Calling…",
  ringing: "Ringing…",
  incoming: "Incoming call",
  connecting: "Connecting…",
  connected: "Connected",
  ended: "Call ended",
};

function duration(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
}

function CallPanel({ model, state }: { model: Peerline; state: State }) {
  const call = state.call!;
  const audio = useRef<HTMLAudioElement>(null);
  const stream = model.callStream();
  useEffect(() => {
    if (audio.current && audio.current.srcObject !== (stream ?? null)) {
      audio.current.srcObject = stream ?? null;
      void audio.current.play().catch(() => {});
    }
  }, [stream]);
  const name = state.contacts.get(call.peer)?.display_name ?? call.peer;
  return (
    <section class={`call ${call.phase}`} aria-label="Call" data-phase={call.phase} data-path={call.path ?? ""} data-reconnecting={call.reconnecting ? "true" : undefined} data-restarts={call.restarts} data-resuming={call.resuming ? "true" : undefined}>
      {call.alarm && (
        <p role="alert" class="alarm">
          {call.alarm}
        </p>
      )}
      {call.caution && (
        <p role="alert" class="caution">
          <bdi>{call.caution}</bdi>
        </p>
      )}
      <h2>
        <bdi>{name}</bdi>
      </h2>
      <p role="status" class="call-state">
        {PHASES[call.phase]}
        {call.phase === "connected" && call.connectedAt && ` ${duration(Date.now() - call.connectedAt)}`}
        {call.path && call.phase === "connected" && ` · ${call.path}`}
        {call.reconnecting && call.phase === "connected" && " · reconnecting…"}
        {call.resuming && call.phase === "connected" && " · reconnecting to the supernode…"}
        {call.ended && `: ${call.ended}`}
      </p>
      {call.phase !== "ended" && call.phase !== "incoming" && (
        <div class="meters">
          <label>
            Microphone level <meter min={0} max={1} value={call.micLevel} />
          </label>
          <label>
            Received level <meter min={0} max={1} value={call.remoteLevel} data-level={call.remoteLevel > 0 ? "sound" : "silent"} />
          </label>
        </div>
      )}
      <div class="row">
        {call.phase === "incoming" ? (
          <>
            <button type="button" onClick={model.acceptCall}>
              Accept
            </button>
            <button type="button" class="danger" onClick={model.declineCall}>
              Decline
            </button>
          </>
        ) : call.phase === "ended" ? (
          <button type="button" class="secondary" onClick={() => model.closeCall()}>
            Close
          </button>
        ) : (
          <>
            <button type="button" class="secondary" aria-pressed={call.muted} onClick={model.toggleMute}>
              {call.muted ? "Unmute" : "Mute"}
            </button>
            <button type="button" class="danger" onClick={model.hangUp}>
              Hang up
            </button>
          </>
        )}
      </div>
      <audio ref={audio} autoplay />
    </section>
  );
}
