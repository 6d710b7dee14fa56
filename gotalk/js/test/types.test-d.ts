// Type test: compiled with `tsc -p test/tsconfig.json` (no emit) against ../gotalk.d.ts.
// Every runtime export is used here; test/types.test.js checks the export lists agree.
import gotalk = require('../gotalk');

const h: gotalk.Handlers = gotalk.Handlers();
const h2: gotalk.Handlers = new gotalk.Handlers();
const d: gotalk.Handlers = gotalk.defaultHandlers;
const addr: string | null = gotalk.defaultResponderAddress;
const dev: boolean = gotalk.developmentMode;
const v: string = gotalk.version;
gotalk.WebSocket = null;

gotalk.handle<{ name: string }, { greeting: string }>('greet', (value, result, op, sock) => {
  const n: string = value.name;
  const o: string = op;
  const s: gotalk.Sock = sock;
  result({ greeting: 'Hello ' + n + o + String(s.isOpen) });
});
gotalk.handleRequest('async', async (value: number) => value * 2);
gotalk.handleBufferRequest('echo', (buf, result) => { const b: Uint8Array = buf; result(b); result.error('no'); });
gotalk.handleNotification<{ n: number }>('ping', (value, name) => { const x: number = value.n; void name; void x; });
gotalk.handleBufferNotification('raw', (buf, name, sock) => { const t: string = buf.toString(); void t; void name; void sock; });
gotalk.handleStreamRequest('upper', async (sock, op, input, output) => {
  for await (const chunk of input) output.write(chunk.toString().toUpperCase());
  input.on('end', (err) => { if (err) output.error(err); });
  output.end();
  void sock; void op;
});
h.handleStreamRequest('x', (sock, op, input, output) => { output.end('done'); void input; });
const found: gotalk.BufferRequestHandler | null = h2.findRequestHandler('x');
const nh: gotalk.BufferNotificationHandler | null = d.findNotificationHandler('x');
const sh: gotalk.StreamRequestHandler | null = h.findStreamRequestHandler('x');

// Generated service modules call through a Caller and register on a HandlerTarget.
const targets: gotalk.HandlerTarget[] = [gotalk, h, gotalk.defaultHandlers];
function caller(s: gotalk.Sock): gotalk.Caller { return s; }
void targets; void caller;

async function client() {
  const s: gotalk.Sock = gotalk.connection();
  const s2: gotalk.Sock = gotalk.connection('ws://h/gotalk/', { WebSocket: class {} , heartbeatInterval: 1000 });
  const s3: gotalk.Sock = gotalk.open('ws://h/', (err, sock) => { if (err) throw err; void sock; }, h);
  const s4: gotalk.Sock = gotalk.open({ WebSocket: null });
  const s5: gotalk.Sock = gotalk.Sock(h, { sendBufferLimit: 5 });
  const s6: gotalk.Sock = new gotalk.Sock({ handlers: h, maxRetries: 2 });
  const s7: gotalk.Sock = gotalk.Sock({ maxPayloadSize: 1 << 20, streamBufferLimit: 4 << 20, maxPendingRequests: 64,
                                        maxIncomingRequests: 8, maxRetryWait: 5000, requestTimeout: 0 });
  s.on('open', (sock) => { const x: gotalk.Sock = sock; void x; })
   .on('close', (err) => { if (err && 'isGotalkProtocolError' in err) { const c: number = err.code; void c; } })
   .on('heartbeat', (hb) => { const t: Date = hb.time; const l: number = hb.load; void t; void l; })
   .on('notification', (n) => { const name: string = n.name; const data: gotalk.Buf = n.data; void name; void data; });
  const r: { greeting: string } = await s.request<{ greeting: string }>('greet', { name: 'x' });
  s.request('greet', { name: 'x' }, (err, res) => { void err; void res; });
  const b: gotalk.Buf = await s.bufferRequest('echo', 'text');
  await s.bufferRequest('echo', new Uint8Array(2));
  s.bufferRequest('echo', null, (err, res) => { void err; void res; });
  await s.requestp('x', 1);
  await s.bufferRequestp('x', 'y');
  const req: gotalk.StreamRequest = s.streamRequest('stream-echo');
  req.on('data', (chunk) => { const c: gotalk.Buf = chunk; void c; }).on('end', (err) => void err);
  req.write('a'); req.end();
  for await (const chunk of req) { const c: Uint8Array = chunk; void c; }
  s.notify('n', { a: 1 });
  s.bufferNotify('n', 'x');
  s.sendHeartbeat(0.5);
  const a: string | null = s.address();
  s.openKeepAlive('ws://x/').open('ws://y/');
  s.heartbeatInterval = 20000; s.sendBufferLimit = 10; s.maxRetries = 3;
  s.minReconnectDelay = 100; s.maxReconnectDelay = 1000; s.maxPayloadSize = 1 << 20;
  s.streamBufferLimit = 1 << 22; s.maxPendingRequests = 10; s.maxIncomingRequests = 10;
  s.maxRetryWait = 1000; s.requestTimeout = 60000;
  if (s.keepalive) { const n: number = s.keepalive.nextDelay(null, true); void n; }
  s.end();
  const sr = gotalk.StreamRequest(s, 'op', '!000');
  void sr; void s2; void s3; void s4; void s5; void s6; void s7; void r; void b; void a;
}

function errors(e: Error) {
  const pe: gotalk.ProtocolError = gotalk.ErrInvalidMsg;
  const all = [gotalk.ErrAbnormal, gotalk.ErrUnsupported, gotalk.ErrTimeout];
  const re = e as gotalk.RetryError;
  const wait: number = re.retryAfter;
  const le = e as gotalk.LimitError;
  if (le.limit === 'streamBufferLimit' || le.limit === 'requestTimeout') { const sz: number | undefined = le.size; void sz; }
  // @ts-expect-error: not a limit name
  if (le.limit === 'nonesuch') void 0;
  void pe; void all; void wait;
}

function codec() {
  const p = gotalk.protocol;
  const hdr: gotalk.Buf = p.encodeHeader({ t: 'r', id: '0001', name: 'echo', size: 3 });
  const msg: gotalk.Buf = p.encodeMsg({ t: p.MsgTypeSingleRes, id: '0001' }, 'abc');
  const dec = new p.Decoder({ readVersion: true, maxPayloadSize: 1024 });
  const dec2 = p.Decoder({ skipOversized: true });
  dec2.feed(msg, (m) => { const big: true | undefined = m.oversized; void big; return true; });
  const msgs: gotalk.Message[] = dec.push(msg);
  const m = msgs[0];
  const fields: (number | string | null)[] = [m.t, m.id, m.name, m.wait, m.size, m.load, m.time, m.code];
  const ph = p.parseHeader(hdr, 0, hdr.length);
  const pe: gotalk.ProtocolError = p.protocolError(p.ErrorInvalidMsg, 'x');
  const consts: number[] = [p.Version, p.MsgTypeSingleReq, p.MsgTypeStreamReq, p.MsgTypeStreamReqPart,
    p.MsgTypeSingleRes, p.MsgTypeStreamRes, p.MsgTypeErrorRes, p.MsgTypeRetryRes, p.MsgTypeNotification,
    p.MsgTypeHeartbeat, p.MsgTypeProtocolError, p.ErrorAbnormal, p.ErrorUnsupported, p.ErrorInvalidMsg,
    p.ErrorTimeout, p.HeartbeatMsgMaxLoad, p.MaxNameLength, p.MaxHeaderLength];
  const bin = p.binary;
  const parts = [bin.versionBuf, bin.makeFixnum(1, 2), bin.parseVersion('01'), bin.makeMsg(0x72, '0000', 'x', 0, 0),
    bin.makeHeartbeatMsg(0), bin.parseMsg(hdr)];
  const buf: gotalk.Buf = gotalk.Buf.fromString('x');
  const isBuf: boolean = gotalk.Buf.isBuf(buf);
  const em = gotalk.EventEmitter.mixin({ a: 1 });
  em.on('x', () => {}).emit('x', 1);
  void fields; void ph; void pe; void consts; void parts; void isBuf; void dec2; void em.a;
}

// @ts-expect-error: op must be a string
gotalk.handle(1, () => {});
// @ts-expect-error: request ids are a string, not a number
gotalk.StreamRequest(gotalk.Sock(), 'op', 7);
// @ts-expect-error: unknown event name
gotalk.Sock().on('nonesuch', () => {});

void client; void errors; void codec; void found; void nh; void sh; void addr; void dev; void v;
