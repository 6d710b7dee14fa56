'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const { FakeWebSocket, Peer, connect, tick, te, td, gotalk } = require('../test-support/helpers.js');
const { protocol } = gotalk;

test('open: sends version then a heartbeat, emits open, callback gets the sock', async () => {
  FakeWebSocket.reset();
  const s = gotalk.Sock(gotalk.Handlers(), { WebSocket: FakeWebSocket });
  let cbArgs, opened = 0;
  s.on('open', (sock) => { assert.equal(sock, s); opened++; });
  s.open('ws://example/gotalk/', (err, sock) => { cbArgs = [err, sock]; });
  const ws = FakeWebSocket.instances[0];
  assert.equal(ws.url, 'ws://example/gotalk/');
  assert.equal(ws.binaryType, 'arraybuffer');
  ws.accept();
  assert.deepEqual(cbArgs, [null, s]);
  assert.equal(opened, 1);
  const sent = ws.sentStrings();
  assert.equal(sent[0], '01');
  assert.equal(ws.sent[0].kind, 'binary');
  assert.match(sent[1], /^h0000[0-9a-f]{8}$/);
  assert.equal(s.address(), 'ws://example/gotalk/');
  s.end(); s.end();
  await tick();
  assert.equal(ws.closeCode, 1000);
});

test('request/response matching: JSON and buffer, promise and callback, out of order', async () => {
  const { s, peer } = connect();
  const p1 = s.request('greet', { name: 'Browser' });
  const p2 = s.bufferRequest('echo', new Uint8Array([0, 1, 255]));
  let cbResult;
  const undef = s.request('cb-op', 1, (err, v) => { cbResult = [err, v]; });
  assert.equal(undef, undefined);
  const r1 = await peer.next();
  const r2 = await peer.next();
  const r3 = await peer.next();
  assert.deepEqual([r1.type, r1.id, r1.name, r1.text], ['r', '0000', 'greet', '{"name":"Browser"}']);
  assert.deepEqual([r2.type, r2.id, r2.name, Array.from(r2.payload)], ['r', '0001', 'echo', [0, 1, 255]]);
  assert.deepEqual([r3.id, r3.text], ['0002', '1']);
  // answer in reverse order
  peer.send({ t: 'R', id: r3.id }, '"three"');
  peer.send({ t: 'R', id: r2.id }, Uint8Array.from(r2.payload).reverse());
  peer.send({ t: 'R', id: r1.id }, '{"greeting":"Hello Browser"}');
  assert.deepEqual(await p1, { greeting: 'Hello Browser' });
  const b = await p2;
  assert.ok(b instanceof Uint8Array);
  assert.deepEqual(Array.from(b), [255, 1, 0]);
  assert.deepEqual(cbResult, [null, 'three']);
});

test('request without a value sends an empty payload; empty result is undefined', async () => {
  const { s, peer } = connect();
  const p = s.request('notify-me');
  const m = await peer.next();
  assert.equal(m.size, 0);
  peer.send({ t: 'R', id: m.id }, '');
  assert.equal(await p, undefined);
});

test('ErrorResult rejects with the text; bad JSON result rejects; callback gets the error', async () => {
  const { s, peer } = connect();
  const p = s.request('fail', {});
  const q = s.request('bad', 1);
  let cbErr;
  s.bufferRequest('no-such-op', 'x', (err, r) => { cbErr = [err, r]; });
  const [a, b, c] = [await peer.next(), await peer.next(), await peer.next()];
  peer.send({ t: 'E', id: a.id }, 'nope');
  peer.send({ t: 'R', id: b.id }, 'not json');
  peer.send({ t: 'E', id: c.id }, 'unknown operation "no-such-op"');
  await assert.rejects(p, { message: 'nope' });
  await assert.rejects(q, /invalid JSON/);
  assert.equal(cbErr[0].message, 'unknown operation "no-such-op"');
  assert.equal(cbErr[1], null);
});

test('a stream result to a single request is collected', async () => {
  const { s, peer } = connect();
  const p = s.bufferRequest('x', 'y');
  const m = await peer.next();
  peer.send({ t: 'S', id: m.id }, 'ab');
  peer.send({ t: 'S', id: m.id }, 'cd');
  peer.send({ t: 'S', id: m.id }, '');
  assert.equal(String(await p), 'abcd');
});

test('string payloads go out as text frames, bytes as binary frames', async () => {
  const { s, ws } = connect();
  s.bufferRequest('echo', 'hello ✓ é');
  s.bufferRequest('echo', new Uint8Array([1, 2]));
  const f = ws.sent.slice(-4);
  assert.deepEqual(f.map((x) => x.kind), ['binary', 'text', 'binary', 'binary']);
  assert.equal(td.decode(f[0].data), 'r0000004echo0000000c'); // UTF-8 byte length
  assert.equal(f[1].data, 'hello ✓ é');
});

test('answers incoming requests with registered handlers (value, buffer, promise, errors)', async () => {
  const h = gotalk.Handlers();
  h.handleRequest('greet', (v, result, op, sock) => {
    assert.equal(op, 'greet');
    assert.ok(sock instanceof gotalk.Sock);
    result({ greeting: 'Hello ' + v.name });
  });
  h.handleBufferRequest('client-op', (buf, result) => result(Uint8Array.from(buf).reverse()));
  h.handleRequest('async', async (v) => v * 2);
  h.handleRequest('throws', () => { throw new Error('boom'); });
  h.handleRequest('rejects', () => Promise.reject(new Error('later boom')));
  h.handleRequest('errs', (v, result) => result.error(new Error('bad input')));
  h.handleBufferRequest('', (buf, result, op) => result('fallback:' + op));
  const { peer } = connect({}, h);
  peer.send({ t: 'r', id: '\0\0\0\0', name: 'client-op' }, 'abc123');
  peer.send({ t: 'r', id: 'g001', name: 'greet' }, '{"name":"Rust"}');
  peer.send({ t: 'r', id: 'a001', name: 'async' }, '21');
  peer.send({ t: 'r', id: 't001', name: 'throws' }, '');
  peer.send({ t: 'r', id: 'j001', name: 'rejects' }, '');
  peer.send({ t: 'r', id: 'e001', name: 'errs' }, '1');
  peer.send({ t: 'r', id: 'f001', name: 'whatever' }, '');
  const got = {};
  for (let i = 0; i < 7; i++) { const m = await peer.next(); got[m.id] = m.type + ':' + m.text; }
  assert.deepEqual(got, {
    '\0\0\0\0': 'R:321cba', g001: 'R:{"greeting":"Hello Rust"}', a001: 'R:42', t001: 'E:boom',
    j001: 'E:later boom', e001: 'E:bad input', f001: 'R:fallback:whatever',
  });
});

test('unknown operation is answered with a plain-text ErrorResult', async () => {
  const { peer } = connect();
  peer.send({ t: 'r', id: 'x001', name: 'nope' }, '1');
  const m = await peer.next();
  assert.deepEqual([m.type, m.id, m.text], ['E', 'x001', 'unknown operation "nope"']);
});

test('notifications both ways; notification event; module-level handlers use defaultHandlers', async () => {
  const seen = [];
  gotalk.handleNotification('ping', (v, name) => seen.push(['json', v, name]));
  gotalk.handleBufferNotification('raw', (b, name) => seen.push(['raw', String(b), name]));
  FakeWebSocket.reset();
  const s = gotalk.open('ws://x/', { WebSocket: FakeWebSocket, heartbeatInterval: 0 });
  assert.equal(s.handlers, gotalk.defaultHandlers);
  const peer = new Peer(FakeWebSocket.instances[0]);
  const events = [];
  s.on('notification', (n) => events.push([n.name, String(n.data)]));
  peer.send({ t: 'n', name: 'ping' }, '{"n":1}');
  peer.send({ t: 'n', name: 'raw' }, 'bytes');
  peer.send({ t: 'n', name: 'unhandled' }, 'x');
  assert.deepEqual(seen, [['json', { n: 1 }, 'ping'], ['raw', 'bytes', 'raw']]);
  assert.deepEqual(events, [['ping', '{"n":1}'], ['raw', 'bytes'], ['unhandled', 'x']]);
  s.notify('hello', { a: 1 });
  s.bufferNotify('blob', new Uint8Array([9]));
  const [a, b] = [await peer.next(), await peer.next()];
  assert.deepEqual([a.type, a.name, a.text], ['n', 'hello', '{"a":1}']);
  assert.deepEqual([b.type, b.name, Array.from(b.payload)], ['n', 'blob', [9]]);
  gotalk.defaultHandlers.noteHandlers.ping = undefined;
});

test('heartbeats: sent on open and periodically; received ones emit heartbeat', (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const { s, ws, peer } = connect({ heartbeatInterval: 20000 });
  const beats = () => ws.sentStrings().filter((x) => x[0] === 'h').length;
  assert.equal(beats(), 1);
  t.mock.timers.tick(19999);
  assert.equal(beats(), 1);
  t.mock.timers.tick(1);
  assert.equal(beats(), 2);
  t.mock.timers.tick(20000);
  t.mock.timers.tick(20000);
  assert.equal(beats(), 4);
  let hb;
  s.on('heartbeat', (x) => { hb = x; });
  ws.receiveBinary('hffff6b069c5e');
  assert.equal(hb.load, 1);
  assert.equal(hb.time.getTime(), 0x6b069c5e * 1000);
  s.sendHeartbeat(0.5);
  assert.equal(ws.sentStrings().pop().slice(0, 5), 'h8000');
  void peer;
});

test('incoming data is one byte stream: any framing is accepted', async () => {
  const h = gotalk.Handlers();
  h.handleBufferRequest('echo', (b, r) => r(b));
  FakeWebSocket.reset();
  const s = gotalk.Sock(h, { WebSocket: FakeWebSocket, heartbeatInterval: 0 });
  s.open('ws://x/');
  const ws = FakeWebSocket.instances[0];
  const peer = new Peer(ws, { sendVersion: false });
  const p = s.bufferRequest('q', 'x');
  // version, a request and the result to ours, all in one frame, then split oddly, some as text
  ws.receiveBinary('01r0001004echo00000003abcR0000');
  ws.receive('00000002o');
  ws.receiveBinary('k');
  assert.equal(String(await p), 'ok');
  const m = await peer.next('R');
  assert.deepEqual([m.id, m.text], ['0001', 'abc']);
});

test('protocol errors: garbage closes with f00000002 and 4002; close error has code', async () => {
  const { s, ws } = connect();
  const pending = assert.rejects(s.request('x', 1), (e) => e.code === 2);
  let closeErr;
  s.on('close', (e) => { closeErr = e; });
  ws.receiveBinary('zgarbage');
  await tick();
  assert.equal(ws.sentStrings().pop(), 'f00000002');
  assert.equal(ws.closeCode, 4002);
  assert.equal(closeErr.isGotalkProtocolError, true);
  assert.equal(closeErr.code, protocol.ErrorInvalidMsg);
  await pending;
});

test('protocol errors: unsupported version gets f00000001 and 4001', async () => {
  FakeWebSocket.reset();
  const s = gotalk.Sock(gotalk.Handlers(), { WebSocket: FakeWebSocket, heartbeatInterval: 0 });
  s.open('ws://x/');
  const ws = FakeWebSocket.instances[0];
  ws.accept();
  let closeErr;
  s.on('close', (e) => { closeErr = e; });
  ws.receiveBinary('02');
  await tick();
  assert.equal(ws.sentStrings().pop(), 'f00000001');
  assert.equal(ws.closeCode, 4001);
  assert.equal(closeErr.code, protocol.ErrorUnsupported);
});

test('protocol errors: an incoming f closes with 4000+code and an error carrying the code', async () => {
  const { s, ws } = connect();
  let closeErr;
  s.on('close', (e) => { closeErr = e; });
  ws.receiveBinary('f00000003');
  await tick();
  assert.equal(ws.closeCode, 4003);
  assert.equal(closeErr.isGotalkProtocolError, true);
  assert.equal(closeErr.code, protocol.ErrorTimeout);
});

test('peer closing with a 4000+ status surfaces a protocol error; other codes a plain error', async () => {
  let r = connect(), err;
  r.s.on('close', (e) => { err = e; });
  r.ws.serverClose(4002);
  assert.equal(err.code, 2);
  assert.equal(err.isGotalkProtocolError, true);
  r = connect();
  r.s.on('close', (e) => { err = e; });
  r.ws.serverClose(1006);
  assert.match(err.message, /abnormal/);
  assert.equal(err.isGotalkProtocolError, undefined);
  r = connect();
  r.s.on('close', (e) => { err = e; });
  r.ws.serverClose(1000);
  assert.equal(err, null);
});

test('send buffer: kept while connecting, flushed on open in order after the version', async () => {
  FakeWebSocket.reset();
  const s = gotalk.Sock(gotalk.Handlers(), { WebSocket: FakeWebSocket, heartbeatInterval: 0, sendBufferLimit: 2 });
  s.open('ws://x/');
  const p1 = s.request('a', 1);
  const p2 = s.bufferRequest('b', 'x');
  await assert.rejects(s.request('c', 3), /send buffer full/);
  assert.throws(() => s.notify('n', 1), /send buffer full/);
  const ws = FakeWebSocket.instances[0];
  assert.equal(ws.sent.length, 0);
  const peer = new Peer(ws);
  assert.equal(ws.sentStrings()[0], '01');
  const [a, b] = [await peer.next(), await peer.next()];
  assert.deepEqual([a.name, b.name], ['a', 'b']);
  peer.send({ t: 'R', id: a.id }, '1');
  peer.send({ t: 'R', id: b.id }, 'y');
  assert.equal(await p1, 1);
  assert.equal(String(await p2), 'y');
});

test('send buffer: failing to connect fails what was kept; closed socket refuses requests', async () => {
  FakeWebSocket.reset();
  const s = gotalk.Sock(gotalk.Handlers(), { WebSocket: FakeWebSocket });
  let openErr;
  s.open('ws://x/', (err) => { openErr = err; });
  const p = s.request('a', 1);
  FakeWebSocket.instances[0].refuse();
  assert.match(openErr.message, /connection failed/);
  await assert.rejects(p, /connection failed/);
  await assert.rejects(s.request('b', 1), /socket is closed/);
  assert.throws(() => s.sendHeartbeat(0), /socket is closed/);
});

test('end() waits for outstanding results; a second end() closes at once', async () => {
  let r = connect();
  const p = r.s.request('slow', 1);
  const m = await r.peer.next();
  r.s.end();
  await tick();
  assert.equal(r.ws.closeCode, null);
  r.peer.send({ t: 'R', id: m.id }, '2');
  assert.equal(await p, 2);
  await tick();
  assert.equal(r.ws.closeCode, 1000);

  r = connect();
  const q = assert.rejects(r.s.request('slow', 1), /connection closed/);
  let closeErr = 'unset';
  r.s.on('close', (e) => { closeErr = e; });
  r.s.end();
  r.s.end();
  await tick();
  assert.equal(r.ws.closeCode, 1000);
  assert.equal(closeErr, null);
  await q;
});

test('request ids are base-36, stream ids start with "!"', async () => {
  const { s, peer } = connect();
  for (let i = 0; i < 37; i++) s.bufferRequest('x', null).catch(() => {});
  const ids = [];
  for (let i = 0; i < 37; i++) ids.push((await peer.next()).id);
  assert.deepEqual(ids.slice(0, 3), ['0000', '0001', '0002']);
  assert.equal(ids[10], '000a');
  assert.equal(ids[36], '0010');
  assert.equal(s.streamRequest('x').id, '!000');
  assert.equal(s.streamRequest('x').id, '!001');
});

test('Sock options object and Handlers are both accepted', () => {
  const h = gotalk.Handlers();
  assert.equal(gotalk.Sock(h).handlers, h);
  const s = gotalk.Sock({ handlers: h, heartbeatInterval: 5, sendBufferLimit: 7 });
  assert.equal(s.handlers, h);
  assert.equal(s.heartbeatInterval, 5);
  assert.equal(s.sendBufferLimit, 7);
  assert.ok(new gotalk.Sock() instanceof gotalk.Sock);
  assert.equal(gotalk.Sock().handlers, gotalk.defaultHandlers);
});

test('no WebSocket implementation and bad addresses give clear errors', () => {
  const s = gotalk.Sock(gotalk.Handlers());
  const saved = globalThis.WebSocket;
  try {
    delete globalThis.WebSocket;
    assert.throws(() => s.open('ws://x/'), /no WebSocket implementation/);
  } finally {
    if (saved) globalThis.WebSocket = saved;
  }
  assert.throws(() => gotalk.Sock(gotalk.Handlers(), { WebSocket: FakeWebSocket }).open('ftp://x'), /unsupported address/);
  assert.throws(() => gotalk.Sock(gotalk.Handlers(), { WebSocket: FakeWebSocket }).open(), /address not specified/);
  // http(s) URLs are mapped to ws(s)
  FakeWebSocket.reset();
  gotalk.Sock(gotalk.Handlers(), { WebSocket: FakeWebSocket }).open('https://h/gotalk/');
  assert.equal(FakeWebSocket.instances[0].url, 'wss://h/gotalk/');
});

test('gotalk.WebSocket setter is used when a Sock has none', () => {
  FakeWebSocket.reset();
  gotalk.WebSocket = FakeWebSocket;
  try {
    const s = gotalk.open('ws://set/', () => {});
    assert.equal(FakeWebSocket.instances[0].url, 'ws://set/');
    assert.ok(s instanceof gotalk.Sock);
  } finally {
    gotalk.WebSocket = null;
  }
});

test('Handlers: lookup and fallbacks', () => {
  const h = new gotalk.Handlers();
  const a = () => {}, b = () => {}, c = () => {};
  h.handleBufferRequest('a', a);
  assert.equal(h.findRequestHandler('a'), a);
  assert.equal(h.findRequestHandler('z'), null);
  h.handleBufferRequest('', b);
  assert.equal(h.findRequestHandler('z'), b);
  h.handleBufferNotification('', c);
  assert.equal(h.findNotificationHandler('q'), c);
  assert.equal(h.findStreamRequestHandler('q'), null);
  h.handleStreamRequest('s', a);
  assert.equal(h.findStreamRequestHandler('s'), a);
  assert.equal(typeof gotalk.handle, 'function');
  gotalk.handle('module-level', () => {});
  assert.equal(typeof gotalk.defaultHandlers.findRequestHandler('module-level'), 'function');
  gotalk.handleBufferRequest('module-level-buf', a);
  assert.equal(gotalk.defaultHandlers.findRequestHandler('module-level-buf'), a);
});

test('EventEmitter: on/once/off/emit and mixin', () => {
  const e = gotalk.EventEmitter.mixin({});
  const got = [];
  const f = (x) => got.push('f' + x);
  e.on('a', f).once('a', (x) => got.push('once' + x));
  e.emit('a', 1);
  e.emit('a', 2);
  e.removeListener('a', f);
  e.emit('a', 3);
  assert.deepEqual(got, ['f1', 'once1', 'f2']);
  assert.equal(e.emit('none'), false);
});

void te;
