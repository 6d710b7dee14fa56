// Type declarations for gotalk.js (gotalk-rs). Checked against the runtime by test/types.test.js.
export = gotalk;
export as namespace gotalk;

declare namespace gotalk {

/** Library version */
const version: string;

/** Default Handlers used by the module-level handle* functions and by Sock() without handlers */
let defaultHandlers: Handlers;

/**
 * Address used when open()/connection() get none. In a browser it is derived from the URL of the
 * script that loaded gotalk.js (http://h/gotalk/gotalk.js -> ws://h/gotalk/); else null.
 * Accepted forms: ws://…, wss://…, http(s)://… (mapped to ws(s)), //host/path, /path.
 */
let defaultResponderAddress: string | null;

/** True when the page was served from localhost */
let developmentMode: boolean;

/** WebSocket constructor used by Socks that have none of their own (default: globalThis.WebSocket) */
let WebSocket: WebSocketConstructor | null;

/** Open a connection (no reconnection). Returns the Sock at once. */
function open(addr?: string | null, onConnect?: OpenCallback | null, handlersOrOptions?: Handlers | SockOptions): Sock;
function open(addr: string | null | undefined, options: SockOptions): Sock;
function open(onConnect: OpenCallback, handlersOrOptions?: Handlers | SockOptions): Sock;
function open(options: SockOptions): Sock;

/** A Sock kept connected (reconnecting with back-off) until end() is called. */
function connection(addr?: string | null, handlersOrOptions?: Handlers | SockOptions): Sock;
function connection(options: SockOptions): Sock;

/** Handle requests `op` on defaultHandlers with JSON values ("" = fallback) */
function handle<In = any, Out = any>(op: string, h: RequestHandler<In, Out>): void;
/** Same as handle */
function handleRequest<In = any, Out = any>(op: string, h: RequestHandler<In, Out>): void;
/** Handle requests `op` on defaultHandlers with raw payloads */
function handleBufferRequest(op: string, h: BufferRequestHandler): void;
/** Handle notifications `name` on defaultHandlers with JSON values */
function handleNotification<In = any>(name: string, h: NotificationHandler<In>): void;
/** Handle notifications `name` on defaultHandlers with raw payloads */
function handleBufferNotification(name: string, h: BufferNotificationHandler): void;
/** Handle stream requests `op` on defaultHandlers */
function handleStreamRequest(op: string, h: StreamRequestHandler): void;

/** Payloads handed to you are Bufs: Uint8Arrays whose toString() decodes UTF-8 */
class Buf extends Uint8Array {
  toString(): string;
  static fromString(s: string): Buf;
  static isBuf(v: unknown): v is Uint8Array;
}

/** What can be sent as a payload: strings go out as UTF-8 (in a text frame) */
type Payload = string | Uint8Array | ArrayBuffer | ArrayBufferView | null | undefined;

type OpenCallback = (err: Error | null, sock: Sock | null) => void;

interface WebSocketLike {
  readonly readyState: number;
  readonly url?: string;
  binaryType: string;
  send(data: string | Uint8Array): void;
  close(code?: number, reason?: string): void;
  onopen: ((ev: any) => any) | null;
  onmessage: ((ev: { data: any }) => any) | null;
  onclose: ((ev: { code: number }) => any) | null;
  onerror: ((ev: any) => any) | null;
}
type WebSocketConstructor = new (url: string) => WebSocketLike;

/**
 * Options of a Sock (also writable properties of it). The limits bound what a server can make
 * the client hold; breaching one fails the request concerned with a LimitError.
 */
interface SockOptions {
  handlers?: Handlers;
  /** WebSocket implementation, e.g. require('ws') in Node.js */
  WebSocket?: WebSocketConstructor | any;
  /** Milliseconds between heartbeats we send; 0 disables them. Default 20000. */
  heartbeatInterval?: number;
  /** Messages kept while (re)connecting. Default 20. */
  sendBufferLimit?: number;
  /** Re-sends of a request answered with RetryResult. Default 3. */
  maxRetries?: number;
  /** Reconnect back-off, in ms. Defaults 500 and 5000. */
  minReconnectDelay?: number;
  maxReconnectDelay?: number;
  /**
   * Largest payload accepted from the peer, in bytes. Default 16 MiB. A bigger one is skipped
   * as it arrives: its request fails, the peer's request is answered with an ErrorResult, a
   * notification is dropped. Also bounds a stream result collected for a single request.
   */
  maxPayloadSize?: number;
  /**
   * Bytes of stream parts received and not yet consumed (each counting 256 bytes more), for all
   * streams and single requests collecting parts of the connection together. Default 32 MiB.
   * Over it, the holder with the most ends with a LimitError and its parts are dropped.
   */
  streamBufferLimit?: number;
  /** Our requests awaiting results at once; beyond, a request fails at once. Default 4096. */
  maxPendingRequests?: number;
  /**
   * The peer's requests being handled at once; beyond, or while more than maxPayloadSize bytes
   * of ours wait unsent, they are answered with RetryResult. Default 256.
   */
  maxIncomingRequests?: number;
  /** Longest RetryResult wait honoured, in ms; a longer one fails the request. Default 30000. */
  maxRetryWait?: number;
  /** Ms a single request may wait for its result, retries included; 0 = none. Default 300000. */
  requestTimeout?: number;
}

/** Error for a gotalk protocol error (ProtocolError message, or WebSocket close 4000+code) */
interface ProtocolError extends Error {
  isGotalkProtocolError: true;
  /** protocol.ErrorAbnormal | ErrorUnsupported | ErrorInvalidMsg | ErrorTimeout */
  code: number;
}

/** Error a request fails with when the responder kept answering RetryResult */
interface RetryError extends Error {
  isRetry: true;
  /** The responder's last `wait`, in milliseconds */
  retryAfter: number;
  wait: number;
  retries: number;
  /** Set when the wait asked for was longer than maxRetryWait */
  limit?: 'maxRetryWait';
}

/** Error for a limit reached: `limit` names the Sock option */
interface LimitError extends Error {
  limit: 'maxPayloadSize' | 'streamBufferLimit' | 'maxPendingRequests' | 'maxRetryWait' | 'requestTimeout';
  /** maxPayloadSize: the size announced (or collected so far) */
  size?: number;
  /** requestTimeout */
  isTimeout?: true;
}

const ErrAbnormal: ProtocolError;
const ErrUnsupported: ProtocolError;
const ErrInvalidMsg: ProtocolError;
const ErrTimeout: ProtocolError;

interface Resolver<T> {
  (value: T): void;
  error(err: Error | string): void;
}

type RequestHandler<In = any, Out = any> =
  (value: In, result: Resolver<Out>, op: string, sock: Sock) => void | Promise<Out>;
type BufferRequestHandler =
  (data: Buf, result: Resolver<Payload>, op: string, sock: Sock) => void | Promise<Payload>;
type NotificationHandler<In = any> = (value: In, name: string, sock: Sock) => void;
type BufferNotificationHandler = (data: Buf, name: string, sock: Sock) => void;
type StreamRequestHandler =
  (sock: Sock, op: string, input: StreamInput, output: StreamOutput) => void | Promise<void>;

type EventHandler<T> = (data: T) => void;

interface EventEmitter<EventMap = { [k: string]: any }> {
  on<K extends keyof EventMap>(e: K, handler: EventHandler<EventMap[K]>): this;
  addListener<K extends keyof EventMap>(e: K, handler: EventHandler<EventMap[K]>): this;
  once<K extends keyof EventMap>(e: K, handler: EventHandler<EventMap[K]>): this;
  removeListener<K extends keyof EventMap>(e: K, handler: EventHandler<EventMap[K]>): this;
  off<K extends keyof EventMap>(e: K, handler: EventHandler<EventMap[K]>): this;
  removeListeners<K extends keyof EventMap>(e: K): this;
  removeAllListeners(e?: keyof EventMap): this;
  listenerCount(e: keyof EventMap): number;
  emit<K extends keyof EventMap>(e: K, data?: EventMap[K]): boolean;
}
const EventEmitter: {
  new (): EventEmitter;
  (): void;
  prototype: EventEmitter;
  mixin<T extends object>(obj: T): T & EventEmitter;
};

interface SockEventMap {
  open: Sock;
  close: Error | ProtocolError | null;
  heartbeat: { time: Date; load: number };
  notification: { name: string; data: Buf };
}

interface Sock extends EventEmitter<SockEventMap> {
  readonly ws: WebSocketLike | null;
  handlers: Handlers;
  keepalive: KeepAlive | null;
  readonly isOpen: boolean;
  heartbeatInterval: number;
  sendBufferLimit: number;
  maxRetries: number;
  minReconnectDelay: number;
  maxReconnectDelay: number;
  maxPayloadSize: number;
  streamBufferLimit: number;
  maxPendingRequests: number;
  maxIncomingRequests: number;
  maxRetryWait: number;
  requestTimeout: number;
  WebSocket: WebSocketConstructor | null;

  open(addr?: string | null, cb?: OpenCallback): this;
  open(cb: OpenCallback): this;
  openKeepAlive(addr?: string | null): this;

  request<R = any>(op: string, value?: any): Promise<R>;
  request<R = any>(op: string, value: any, cb: (err: Error | null, result: R | null) => void): void;
  request<R = any>(op: string, cb: (err: Error | null, result: R | null) => void): void;
  bufferRequest(op: string, buf?: Payload): Promise<Buf>;
  bufferRequest(op: string, buf: Payload, cb: (err: Error | null, result: Buf | null) => void): void;
  /** @deprecated use request */
  requestp<R = any>(op: string, value?: any): Promise<R>;
  /** @deprecated use bufferRequest */
  bufferRequestp(op: string, buf?: Payload): Promise<Buf>;
  streamRequest(op: string): StreamRequest;
  notify(name: string, value?: any): void;
  bufferNotify(name: string, buf?: Payload): void;
  sendHeartbeat(load: number): void;
  address(): string | null;
  adopt(ws: WebSocketLike): void;
  handshake(): void;
  startReading(): void;
  closeError(code: number, err?: Error): void;
  end(): void;
}
const Sock: {
  new (handlers?: Handlers | null, options?: SockOptions): Sock;
  new (options: SockOptions): Sock;
  (handlers?: Handlers | null, options?: SockOptions): Sock;
  (options: SockOptions): Sock;
  prototype: Sock;
};

interface KeepAlive {
  readonly enabled: boolean;
  readonly isConnected: boolean;
  readonly failures: number;
  readonly waitingForOnline: boolean;
  enable(): void;
  disable(): void;
  nextDelay(err: Error | null, wasOpen: boolean): number;
}

interface ChunkStreamEventMap {
  data: Buf;
  end: Error | null;
  close: Error | null;
}

/** Input of an incoming stream request */
interface StreamInput extends EventEmitter<ChunkStreamEventMap>, AsyncIterable<Buf> {
  readonly op: string;
  readonly id: string;
  readonly ended: boolean;
}

/** Output of an incoming stream request */
interface StreamOutput {
  readonly id: string;
  write(buf: Payload): void;
  end(buf?: Payload): void;
  error(err: Error | string): void;
}

/** An outgoing stream request */
interface StreamRequest extends EventEmitter<ChunkStreamEventMap>, AsyncIterable<Buf> {
  readonly op: string;
  readonly id: string;
  readonly started: boolean;
  readonly ended: boolean;
  write(buf: Payload): void;
  end(): void;
}
const StreamRequest: {
  new (s: Sock, op: string, id: string): StreamRequest;
  (s: Sock, op: string, id: string): StreamRequest;
  prototype: StreamRequest;
};

interface Handlers {
  handleRequest<In = any, Out = any>(op: string, h: RequestHandler<In, Out>): void;
  handleBufferRequest(op: string, h: BufferRequestHandler): void;
  handleNotification<In = any>(name: string, h: NotificationHandler<In>): void;
  handleBufferNotification(name: string, h: BufferNotificationHandler): void;
  handleStreamRequest(op: string, h: StreamRequestHandler): void;
  findRequestHandler(op: string): BufferRequestHandler | null;
  findNotificationHandler(name: string): BufferNotificationHandler | null;
  findStreamRequestHandler(op: string): StreamRequestHandler | null;
}
const Handlers: {
  new (): Handlers;
  (): Handlers;
  prototype: Handlers;
};

/**
 * What a client generated from a Rust `#[gotalk::service(typescript)]` calls through: a Sock, or
 * anything with its request, notify and streamRequest methods.
 */
type Caller = Pick<Sock, 'request' | 'notify' | 'streamRequest'>;

/**
 * Where a module generated from a Rust `#[gotalk::service(typescript)]` registers the handlers of
 * a service the page implements: a Handlers, or gotalk itself (its default handlers).
 */
interface HandlerTarget {
  handleRequest<In = any, Out = any>(op: string, h: RequestHandler<In, Out>): void;
  handleNotification<In = any>(name: string, h: NotificationHandler<In>): void;
  handleStreamRequest(op: string, h: StreamRequestHandler): void;
}

/** A decoded message. Fields not used by its type are 0 / null. */
interface Message {
  t: number;
  id: string | null;
  name: string | null;
  wait: number;
  size: number;
  load: number;
  time: number;
  code: number;
  /** null for a message over maxPayloadSize decoded with skipOversized */
  payload?: Buf | null;
  /** Set (with skipOversized) when the payload was over maxPayloadSize and is being skipped */
  oversized?: true;
}

interface MessageHeader {
  t: number | string;
  id?: string | Uint8Array;
  name?: string;
  wait?: number;
  size?: number;
  load?: number;
  time?: number;
  code?: number;
}

interface DecoderOptions {
  readVersion?: boolean;
  expectVersion?: number;
  /** Default 16 MiB */
  maxPayloadSize?: number;
  /** Deliver a message over maxPayloadSize as {oversized: true} and skip its payload, instead of a protocol error */
  skipOversized?: boolean;
}

type Bytes = string | Uint8Array | ArrayBuffer | ArrayBufferView;

interface Decoder {
  readonly version: number | null;
  readVersion: boolean;
  expectVersion: number;
  maxPayloadSize: number;
  skipOversized: boolean;
  /** The complete messages in what has been pushed so far */
  push(chunk: Bytes): Message[];
  /** Each complete message to `onMessage` as soon as it is decoded; returning false drops the rest of the chunk */
  feed(chunk: Bytes, onMessage: (m: Message) => boolean | void): void;
}

namespace protocol {
  const Version: 1;
  const MsgTypeSingleReq: 0x72;
  const MsgTypeStreamReq: 0x73;
  const MsgTypeStreamReqPart: 0x70;
  const MsgTypeSingleRes: 0x52;
  const MsgTypeStreamRes: 0x53;
  const MsgTypeErrorRes: 0x45;
  const MsgTypeRetryRes: 0x65;
  const MsgTypeNotification: 0x6e;
  const MsgTypeHeartbeat: 0x68;
  const MsgTypeProtocolError: 0x66;
  const ErrorAbnormal: 0;
  const ErrorUnsupported: 1;
  const ErrorInvalidMsg: 2;
  const ErrorTimeout: 3;
  const HeartbeatMsgMaxLoad: 0xffff;
  const MaxNameLength: number;
  const MaxHeaderLength: number;
  function encodeHeader(m: MessageHeader): Buf;
  function encodeMsg(m: MessageHeader, payload?: Payload): Buf;
  function parseHeader(b: Uint8Array, off: number, end: number): { msg: Message; len: number } | null;
  function protocolError(code: number, detail?: string): ProtocolError;
  const Decoder: {
    new (opts?: DecoderOptions): Decoder;
    (opts?: DecoderOptions): Decoder;
  };
  /** Helpers named like the reference library's protocol.binary */
  const binary: {
    versionBuf: Buf;
    makeFixnum(n: number, digits: number): Buf;
    parseVersion(b: Uint8Array | string): number;
    makeMsg(t: number, id: string | Uint8Array | null, name: string | null, wait: number, size: number): Buf;
    makeHeartbeatMsg(load: number, time?: number): Buf;
    parseMsg(b: Uint8Array | string): Message | null;
  };
}

} // namespace gotalk
