'use strict';
// The limits on what a peer sends, rule by rule, with a scripted peer (test/hostile.test.js
// attacks the same limits over real sockets and measures memory).
const test = require('node:test');
const assert = require('node:assert/strict');
const { FakeWebSocket, connect, tick, te, gotalk } = require('../test-support/helpers.js');
const { protocol } = gotalk;

const bytes = (n) => new Uint8Array(n).fill(0x62);
const OVERHEAD = 256;   // what each kept part counts beyond its bytes

test('defaults: bounded everywhere, and settable as options', () => {
  const s = gotalk.Sock(gotalk.Handlers());
  assert.equal(s.maxPayloadSize, 16 * 1024 * 1024);
  assert.equal(s.streamBufferLimit, 32 * 1024 * 1024);
  assert.equal(s.maxPendingRequests, 4096);
  assert.equal(s.maxIncomingRequests, 256);
  assert.equal(s.maxRetryWait, 30000);
  assert.equal(s.requestTimeout, 300000);
  const o = gotalk.Sock({ maxPayloadSize: 1, streamBufferLimit: 2, maxPendingRequests: 3,
                          maxIncomingRequests: 4, maxRetryWait: 5, requestTimeout: 6 });
  assert.deepEqual([o.maxPayloadSize, o.streamBufferLimit, o.maxPendingRequests, o.maxIncomingRequests,
                    o.maxRetryWait, o.requestTimeout], [1, 2, 3, 4, 5, 6]);
});

test('the stream holding the most unconsumed bytes is the one that gives up', async () => {
  const { s, peer } = connect({ streamBufferLimit: 10000 });
  const a = s.streamRequest('a');
  const b = s.streamRequest('b');
  a.end();
  b.end();
  const ida = (await peer.next('s')).id, idb = (await peer.next('s')).id;
  peer.send({ t: 'S', id: ida }, bytes(6000));
  peer.send({ t: 'S', id: idb }, bytes(3000));
  // 6000 + 3000 + 2 x 256 fit in 10,000; one more part for b does not: a holds the most.
  peer.send({ t: 'S', id: idb }, bytes(1000));
  const got = [];
  const errA = await (async () => { try { for await (const c of a) got.push(c.length); } catch (e) { return e; } })();
  assert.deepEqual(got, []);
  assert.equal(errA.limit, 'streamBufferLimit');
  assert.match(errA.message, /stream buffer full: 6256 bytes of parts not consumed \(streamBufferLimit 10000\)/);
  // Later parts for a are ignored; b keeps everything and ends normally.
  peer.send({ t: 'S', id: ida }, bytes(9000));
  peer.send({ t: 'S', id: idb }, '');
  const parts = [];
  for await (const c of b) parts.push(c.length);
  assert.deepEqual(parts, [3000, 1000]);
});

test('a part that alone exceeds the buffer ends its own stream; listeners are never limited', async () => {
  const { s, peer } = connect({ streamBufferLimit: 1000 });
  const kept = s.streamRequest('kept');
  const flowing = s.streamRequest('flowing');
  let seen = 0, flowErr = 'unset';
  flowing.on('data', (c) => { seen += c.length; });
  flowing.on('end', (e) => { flowErr = e; });
  kept.end();
  flowing.end();
  const [k, f] = [(await peer.next('s')).id, (await peer.next('s')).id];
  await tick();
  for (let i = 0; i < 10; i++) peer.send({ t: 'S', id: f }, bytes(5000));
  peer.send({ t: 'S', id: f }, '');
  peer.send({ t: 'S', id: k }, bytes(1000 - OVERHEAD + 1));
  await tick();
  assert.equal(seen, 50000);
  assert.equal(flowErr, null);
  await assert.rejects((async () => { for await (const c of kept) void c; })(), { limit: 'streamBufferLimit' });
});

test('breaking out of for-await releases what the stream kept', async () => {
  const { s, peer } = connect({ streamBufferLimit: 10000 });
  const a = s.streamRequest('a');
  a.end();
  const ida = (await peer.next('s')).id;
  peer.send({ t: 'S', id: ida }, bytes(3000));
  peer.send({ t: 'S', id: ida }, bytes(3000));
  for await (const c of a) { assert.equal(c.length, 3000); break; }
  const b = s.streamRequest('b');
  b.end();
  const idb = (await peer.next('s')).id;
  // 9000 fits only if a's remaining 3000 were let go.
  peer.send({ t: 'S', id: idb }, bytes(9000));
  peer.send({ t: 'S', id: ida }, bytes(3000));   // ignored, a is done with
  peer.send({ t: 'S', id: idb }, '');
  const parts = [];
  for await (const c of b) parts.push(c.length);
  assert.deepEqual(parts, [9000]);
});

test('an incoming stream request whose handler does not read: answered with the error, rest skipped', async () => {
  const h = gotalk.Handlers();
  let inputErr;
  h.handleStreamRequest('lazy', async (sock, op, input) => {
    await new Promise((r) => setTimeout(r, 10));
    try { for await (const c of input) void c; } catch (e) { inputErr = e; }
  });
  const { peer } = connect({ streamBufferLimit: 5000 }, h);
  peer.send({ t: 's', id: 'L000', name: 'lazy' }, bytes(2000));
  peer.send({ t: 'p', id: 'L000' }, bytes(2000));
  peer.send({ t: 'p', id: 'L000' }, bytes(2000));
  peer.send({ t: 'p', id: 'L000' }, bytes(2000));   // skipped, no second answer
  peer.send({ t: 'p', id: 'L000' }, '');
  const m = await peer.next();
  assert.deepEqual([m.type, m.id], ['E', 'L000']);
  assert.match(m.text, /stream buffer full/);
  await new Promise((r) => setTimeout(r, 30));
  assert.equal(inputErr.limit, 'streamBufferLimit');
  assert.equal(peer.messages.filter((x) => x.type !== 'h').length, 0);
});

test('oversized messages from the peer: requests refused, streams ended, notifications dropped', async () => {
  const h = gotalk.Handlers();
  let streamErr = null, noted = 0;
  h.handleBufferRequest('echo', (b, r) => r(b));
  h.handleStreamRequest('up', async (sock, op, input, output) => {
    try { for await (const c of input) output.write(c); } catch (e) { streamErr = e; output.error(e); }
  });
  h.handleBufferNotification('note', () => { noted++; });
  const { s, peer } = connect({ maxPayloadSize: 10 }, h);
  const logged = [];
  const saved = console.error;
  console.error = (e) => logged.push(String(e && e.message || e));
  try {
    peer.send({ t: 'r', id: 'r001', name: 'echo' }, bytes(11));
    peer.send({ t: 's', id: 's001', name: 'up' }, bytes(11));
    peer.send({ t: 'p', id: 's001' }, 'ignored');
    peer.send({ t: 'p', id: 's001' }, '');
    peer.send({ t: 's', id: 's002', name: 'up' }, 'ok');
    peer.send({ t: 'p', id: 's002' }, bytes(11));
    peer.send({ t: 'n', name: 'note' }, bytes(11));
    peer.send({ t: 'r', id: 'r002', name: 'echo' }, bytes(10));
    const got = [];
    for (let i = 0; i < 5; i++) { const m = await peer.next(); got.push([m.id, m.type, m.text]); }
    assert.deepEqual(got.sort(), [
      ['r001', 'E', 'payload too large (11 bytes; limit 10)'],
      ['r002', 'R', 'bbbbbbbbbb'],
      ['s001', 'E', 'payload too large (11 bytes; limit 10)'],
      ['s002', 'E', 'payload too large (11 bytes; maxPayloadSize 10)'],
      ['s002', 'S', 'ok'],
    ]);
    assert.equal(streamErr.limit, 'maxPayloadSize');
    assert.equal(noted, 0);
    assert.match(logged.join('\n'), /notification "note" dropped: payload too large/);
  } finally {
    console.error = saved;
  }
  void s;
});

test('a result over maxPayloadSize fails its request; the skipped payload may come in any framing', async () => {
  const { s, ws, peer } = connect({ maxPayloadSize: 10 });
  const p = s.bufferRequest('x', null);
  const q = s.bufferRequest('y', null);
  const [a, b] = [await peer.next(), await peer.next()];
  ws.receive(protocol.encodeHeader({ t: 'R', id: a.id, size: 100 }));
  await assert.rejects(p, { limit: 'maxPayloadSize', message: 'payload too large (100 bytes; maxPayloadSize 10)' });
  // 100 bytes to skip, split across frames, with the next message glued to the last piece.
  ws.receive(bytes(60));
  ws.receive(new Uint8Array([...bytes(40), ...protocol.encodeMsg({ t: 'R', id: b.id }, 'fine')]));
  assert.equal(String(await q), 'fine');
});

test('a stream result to a single request is collected up to maxPayloadSize', async () => {
  const { s, peer } = connect({ maxPayloadSize: 10 });
  const p = s.bufferRequest('x', null);
  const m = await peer.next();
  peer.send({ t: 'S', id: m.id }, bytes(6));
  peer.send({ t: 'S', id: m.id }, bytes(5));
  await assert.rejects(p, { limit: 'maxPayloadSize', message: /stream result to a single request too large \(11 bytes so far; maxPayloadSize 10\)/ });
  const q = s.bufferRequest('y', null);
  const n = await peer.next();
  peer.send({ t: 'S', id: n.id }, bytes(6));
  peer.send({ t: 'S', id: n.id }, bytes(4));
  peer.send({ t: 'S', id: n.id }, '');
  assert.equal((await q).length, 10);
});

test('stream results collected for single requests count against streamBufferLimit together', async () => {
  const { s, peer } = connect({ maxPayloadSize: 200000, streamBufferLimit: 200000 });
  const ps = [0, 1, 2].map((i) => s.bufferRequest('x' + i, null).then((b) => b.length, (e) => e));
  const ids = [];
  for (let i = 0; i < 3; i++) ids.push((await peer.next()).id);
  // Each result stays under maxPayloadSize, but three requests holding 64 KiB (the first
  // allocation) with one growing to 128 KiB do not fit in 200,000 bytes: the largest fails.
  for (const id of ids) peer.send({ t: 'S', id }, bytes(1000));
  peer.send({ t: 'S', id: ids[1] }, bytes(70000));
  for (const id of ids) peer.send({ t: 'S', id }, '');
  const [a, b, c] = await Promise.all(ps);
  assert.equal(a, 1000);
  assert.equal(b.limit, 'streamBufferLimit');
  assert.equal(c, 1000);
  // Everything was given back: a new collection may use the whole buffer again.
  const q = s.bufferRequest('y', null);
  const id = (await peer.next()).id;
  peer.send({ t: 'S', id }, bytes(140000));
  peer.send({ t: 'S', id }, '');
  assert.equal((await q).length, 140000);
});

test('maxPendingRequests: requests beyond fail at once, stream requests end at once', async () => {
  const { s, peer } = connect({ maxPendingRequests: 2 });
  const a = s.request('a', 1);
  const b = s.request('b', 2);
  await assert.rejects(s.request('c', 3), { limit: 'maxPendingRequests', message: 'too many requests awaiting results (2; maxPendingRequests 2)' });
  const st = s.streamRequest('d');
  st.write('ignored');
  await assert.rejects((async () => { for await (const c of st) void c; })(), { limit: 'maxPendingRequests' });
  const [ma, mb] = [await peer.next(), await peer.next()];
  await tick();
  assert.equal(peer.messages.filter((m) => m.type !== 'h').length, 0);   // c and d were not sent
  peer.send({ t: 'R', id: ma.id }, '1');
  peer.send({ t: 'R', id: mb.id }, '2');
  assert.deepEqual([await a, await b], [1, 2]);
  const c = s.request('c', 3);
  peer.send({ t: 'R', id: (await peer.next()).id }, '3');
  assert.equal(await c, 3);
});

test('requestTimeout: a request without a result fails, a late result is ignored', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const { s, peer } = connect({ requestTimeout: 1000 });
  const p = s.request('slow', 1);
  const outcome = p.then(() => assert.fail('should time out'), (e) => e);
  const m = await peer.next();
  peer.send({ t: 'e', id: m.id, wait: 600 }, 'busy');   // the deadline covers retries too
  t.mock.timers.tick(600);
  const again = await peer.next();
  t.mock.timers.tick(400);
  const err = await outcome;
  assert.equal(err.limit, 'requestTimeout');
  assert.equal(err.isTimeout, true);
  assert.match(err.message, /no result for "slow" within 1000 ms/);
  peer.send({ t: 'R', id: again.id }, '2');
  const q = s.request('fast', 1);
  peer.send({ t: 'R', id: (await peer.next()).id }, '3');
  assert.equal(await q, 3);
});

test('maxRetryWait: a longer wait fails at once with the RetryError', async () => {
  const { s, peer } = connect({ maxRetryWait: 1000 });
  const p = s.request('x', 1);
  const m = await peer.next();
  peer.send({ t: 'e', id: m.id, wait: 1001 }, 'much later');
  const err = await p.then(() => assert.fail('should fail'), (e) => e);
  assert.equal(err.isRetry, true);
  assert.equal(err.limit, 'maxRetryWait');
  assert.equal(err.retryAfter, 1001);
  assert.equal(err.message, 'much later (retry after 1001 ms; longer than maxRetryWait 1000 ms)');
});

test('maxIncomingRequests: the peer\'s requests beyond are answered with RetryResult', async () => {
  const h = gotalk.Handlers();
  const waiting = [];
  h.handleBufferRequest('slow', (b, result) => { waiting.push(result); });
  h.handleStreamRequest('st', () => new Promise(() => {}));
  const { peer } = connect({ maxIncomingRequests: 2 }, h);
  peer.send({ t: 'r', id: 'q001', name: 'slow' }, '');
  peer.send({ t: 's', id: 'q002', name: 'st' }, '');
  peer.send({ t: 'r', id: 'q003', name: 'slow' }, '');
  peer.send({ t: 's', id: 'q004', name: 'st' }, '');
  peer.send({ t: 'p', id: 'q004' }, 'skipped');
  peer.send({ t: 'p', id: 'q004' }, '');
  peer.send({ t: 'r', id: 'q005', name: 'nope' }, '');   // unknown: answered, not counted
  const got = [];
  for (let i = 0; i < 3; i++) { const m = await peer.next(); got.push([m.type, m.id, m.wait, m.text]); }
  assert.deepEqual(got, [
    ['e', 'q003', 500, 'request rate limit'],
    ['e', 'q004', 500, 'stream rate limit'],
    ['E', 'q005', 0, 'unknown operation "nope"'],
  ]);
  waiting[0]('done');
  peer.send({ t: 'r', id: 'q006', name: 'slow' }, '');
  assert.deepEqual([(await peer.next()).id], ['q001']);
  await tick();
  assert.equal(waiting.length, 2);   // q006 was admitted once q001 was answered
});

test('a peer that does not read: its requests get RetryResult while our backlog exceeds maxPayloadSize', async () => {
  const h = gotalk.Handlers();
  h.handleBufferRequest('echo', (b, r) => r(b));
  const { ws, peer } = connect({ maxPayloadSize: 100 }, h);
  ws.bufferedAmount = 101;
  peer.send({ t: 'r', id: 'w001', name: 'echo' }, 'a');
  ws.bufferedAmount = 100;
  peer.send({ t: 'r', id: 'w002', name: 'echo' }, 'b');
  const [a, b] = [await peer.next(), await peer.next()];
  assert.deepEqual([a.type, a.id, b.type, b.id, b.text], ['e', 'w001', 'R', 'w002', 'b']);
});

test('refused stream ids are remembered up to a bound: the oldest are forgotten', async () => {
  const { peer } = connect();
  const ids = [];
  for (let i = 0; i < 1030; i++) ids.push('y' + i.toString(36).padStart(3, '0'));
  for (const id of ids) peer.send({ t: 's', id, name: 'none' }, '');
  for (let i = 0; i < ids.length; i++) await peer.next('E');
  peer.send({ t: 'p', id: ids[0] }, 'late part');          // forgotten: answered
  peer.send({ t: 'p', id: ids[ids.length - 1] }, 'late');   // remembered: skipped
  const m = await peer.next();
  assert.deepEqual([m.type, m.id, m.text], ['E', ids[0], 'no stream request with this id']);
  await tick();
  assert.equal(peer.messages.filter((x) => x.type !== 'h').length, 0);
});

test('data received before startReading() is kept up to streamBufferLimit', async () => {
  FakeWebSocket.reset();
  const ws = new FakeWebSocket('ws://x/');
  ws.readyState = 1;
  const s = gotalk.Sock(gotalk.Handlers(), { heartbeatInterval: 0, streamBufferLimit: 100 });
  let closeErr;
  s.on('close', (e) => { closeErr = e; });
  s.adopt(ws);
  s.handshake();
  ws.receiveBinary('01');
  ws.receive(te.encode('n004ping00000050' + 'x'.repeat(80)));
  assert.equal(ws.closeCode, null);
  ws.receive(bytes(30));
  await tick();
  assert.equal(ws.closeCode, 4000);
  assert.equal(ws.sentStrings().pop(), 'f00000000');
  assert.equal(closeErr.code, 0);
  assert.equal(closeErr.limit, 'streamBufferLimit');
});
