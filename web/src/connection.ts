// One WebSocket connection to the supernode that served this page (same origin, /v1/ws):
// requests matched to their answers by id, events handed to a listener, a heartbeat ping, and
// the frame size limit applied to what arrives (docs/protocol.md sections 2, 3 and 5).
import {
  MAX_FRAME_BYTES,
  PROTOCOL_VERSION,
  WS_PATH,
  type ErrorBody,
  type Event,
  type Reply,
  type Request,
  type ServerFrame,
} from "./protocol";

/** A request the supernode refused: its stable code and its message for people. */
export class ProtocolError extends Error {
  constructor(readonly body: ErrorBody) {
    super(body.message);
  }
  get code(): string {
    return this.body.code;
  }
}

/** The connection closed before the answer came. */
export class ConnectionClosed extends Error {
  constructor() {
    super("the connection to the supernode closed");
  }
}

type Pending = { resolve: (r: Reply) => void; reject: (e: Error) => void };

/** Picks the reply of one type out of the union, for typed requests. */
export type ReplyOf<T extends Reply["type"]> = Extract<Reply, { type: T }>;

/** The same-origin WebSocket URL: wss: for a page served over https:. */
export function supernodeUrl(location: Location = window.location): string {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}${WS_PATH}`;
}

export class Connection {
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private heartbeat: number | undefined;
  private closed = false;
  /** Called for every event, in the order the supernode sent them. */
  onEvent: (event: Event) => void = () => {};
  /** Called once when the connection closes, whoever closed it. */
  onClose: () => void = () => {};

  private constructor(private readonly ws: WebSocket) {
    ws.onmessage = (m) => this.receive(m.data);
    ws.onclose = () => this.shut();
    ws.onerror = () => this.shut();
  }

  /** Opens the WebSocket and says hello; resolves with the hello reply (its nonce). */
  static async open(url = supernodeUrl()): Promise<[Connection, ReplyOf<"hello">]> {
    const ws = new WebSocket(url);
    await new Promise<void>((resolve, reject) => {
      ws.onopen = () => resolve();
      ws.onerror = () => reject(new Error(`cannot connect to ${url}`));
      ws.onclose = () => reject(new Error(`cannot connect to ${url}`));
    });
    const conn = new Connection(ws);
    const hello = await conn.request({ type: "hello", version: PROTOCOL_VERSION, client: "peerline-web/0.1.0" });
    if (hello.type !== "hello") throw new Error(`unexpected answer to hello: ${hello.type}`);
    // Any request resets the idle timer; a third of the timeout leaves room for a slow link.
    const every = Math.max(5, hello.heartbeat_timeout_secs / 3) * 1000;
    conn.heartbeat = window.setInterval(() => {
      conn.request({ type: "ping" }).catch(() => {});
    }, every);
    return [conn, hello];
  }

  get isOpen(): boolean {
    return !this.closed;
  }

  /** Sends `request`; resolves with its reply, rejects with a ProtocolError or ConnectionClosed. */
  request(request: Request): Promise<Reply> {
    if (this.closed) return Promise.reject(new ConnectionClosed());
    const id = this.nextId++;
    const text = JSON.stringify({ id, ...request });
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.ws.send(text);
    });
  }

  /** Sends `request` and checks that the reply is of type `type`. */
  async ask<T extends Reply["type"]>(request: Request, type: T): Promise<ReplyOf<T>> {
    const reply = await this.request(request);
    if (reply.type !== type) throw new Error(`expected ${type}, got ${reply.type}`);
    return reply as ReplyOf<T>;
  }

  close(): void {
    this.ws.close();
    this.shut();
  }

  private receive(data: unknown): void {
    if (typeof data !== "string" || data.length > MAX_FRAME_BYTES) return;
    let frame: ServerFrame;
    try {
      frame = JSON.parse(data) as ServerFrame;
    } catch {
      return;
    }
    if (frame.type === "event") {
      this.onEvent(frame.event);
    } else if (frame.type === "ok" || frame.type === "error") {
      const waiting = frame.id === undefined ? undefined : this.pending.get(frame.id);
      if (!waiting || frame.id === undefined) return;
      this.pending.delete(frame.id);
      if (frame.type === "ok") waiting.resolve(frame.result);
      else waiting.reject(new ProtocolError(frame.error));
    }
  }

  private shut(): void {
    if (this.closed) return;
    this.closed = true;
    window.clearInterval(this.heartbeat);
    for (const p of this.pending.values()) p.reject(new ConnectionClosed());
    this.pending.clear();
    this.onClose();
  }
}
