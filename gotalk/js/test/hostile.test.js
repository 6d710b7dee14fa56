'use strict';
// gotalk.js against a malicious server, over real sockets: a raw WebSocket server written here
// (test-support/rawws.js) sends the hostile bytes to a gotalk.js client that runs, with its
// default limits, in a process of its own (test-support/client-driver.js), so that the memory
// measured is the client's alone. Each attack checks that the request settles with an error
// naming the limit, that the memory the client holds (V8 heap + external, after a full GC)
// grows by less than the bound the limit promises, and that the same connection (where it
// survives) and a second connection are still served.
const test = require('node:test');
const assert = require('node:assert/strict');
const { startRawServer } = require('../test-support/rawws.js');
const { spawnClient } = require('../test-support/client-driver.js');
const gotalk = require('../gotalk.js');

const MiB = 1 << 20;
// The defaults under attack, read from a fresh Sock so that the bounds follow them.
const DEFAULTS = gotalk.Sock(gotalk.Handlers());
const MAX_PAYLOAD = DEFAULTS.maxPayloadSize;
const STREAM_BUFFER = DEFAULTS.streamBufferLimit;
// What V8 and the WebSocket implementation may keep around besides gotalk.js' own buffers
// (measured: under 1 MiB between two quiet points of the same connection).
const RUNTIME_SLACK = 4 * MiB;
// A kept part costs its bytes plus this much (gotalk.js' PART_OVERHEAD).
const PART_OVERHEAD = 256;

const ONE_MIB = new Uint8Array(MiB).fill(0x61);
// A hang guard: before the limits, several of these attacks left a promise that never settled.
const GUARD = { timeout: 60000 };

// What the server does when the client asks for operation `op` (request or stream request).
const attacks = {
  async echo(c, m) { await c.send({ t: m.type === 's' ? 'S' : 'R', id: m.id }, m.payload); if (m.type === 's') await c.send({ t: 'S', id: m.id }); },
  // Stream parts for a single request, far more than maxPayloadSize, never ended.
  async 'single-spam'(c, m) { for (let i = 0; i < 160; i++) if (!await c.send({ t: 'S', id: m.id }, ONE_MIB)) return; },
  // Just under maxPayloadSize of stream parts for one request, never ended.
  async 'single-fill'(c, m) { for (let i = 0; i < 15; i++) if (!await c.send({ t: 'S', id: m.id }, ONE_MIB)) return; },
  // Stream parts nobody consumes, far more than streamBufferLimit, never ended.
  async 'stream-spam'(c, m) { for (let i = 0; i < 160; i++) if (!await c.send({ t: 'S', id: m.id }, ONE_MIB)) return; },
  // 1-byte parts: cheap to send, costly to keep one object each.
  async 'stream-tiny'(c, m) {
    const one = Buffer.from(gotalk.protocol.encodeMsg({ t: 'S', id: m.id }, 'x'));
    const batch = Buffer.concat(Array(1000).fill(one));
    for (let i = 0; i < 400; i++) if (!await c.frame(batch)) return;
  },
  // A header announcing a payload over the limit, and then all of it.
  async oversized(c, m) {
    await c.frame(gotalk.protocol.encodeHeader({ t: 'R', id: m.id, size: 64 * MiB }));
    for (let i = 0; i < 64; i++) if (!await c.frame(ONE_MIB)) return;
  },
  // A header announcing the largest payload allowed, 1 MiB of it, then silence until told.
  async trickle(c, m) {
    await c.frame(gotalk.protocol.encodeHeader({ t: 'R', id: m.id, size: MAX_PAYLOAD }));
    for (let i = 0; i < 16; i++) await c.frame(ONE_MIB.subarray(0, 64 * 1024));
    c.trickle = m;
  },
  async 'trickle-rest'(c) {
    for (let sent = MiB; sent < MAX_PAYLOAD; sent += MiB) await c.frame(ONE_MIB);
  },
  async 'retry-forever'(c, m) { await c.send({ t: 'e', id: m.id, wait: 0xffffffff }, 'come back in 49 days'); },
  async 'retry-then-close'(c, m) {
    await c.send({ t: 'e', id: m.id, wait: 20000 }, 'come back in 20 s');
    setTimeout(() => c.close(1001), 100);
  },
  async garbage(c) { c.tag = 'garbage'; await c.frame('zzzz'); },
  // Parts, then the end: for a consumer that keeps up.
  async 'stream-ok'(c, m) {
    for (let i = 0; i < 64; i++) if (!await c.send({ t: 'S', id: m.id }, ONE_MIB)) return;
    await c.send({ t: 'S', id: m.id });
  },
  async silent() {},
  // Requests to the client for an operation whose handler never answers.
  async 'push-hang'(c, m) {
    for (let i = 0; i < 1000; i++) await c.send({ t: 'r', id: 'h' + String(i).padStart(3, '0'), name: 'hang' });
    await c.waitFor(() => c.of('e').length >= 1000 - 256);
    // A heartbeat round trip would not prove more: the answers come in order of the requests.
    await c.send({ t: 'R', id: m.id }, JSON.stringify({ retries: c.of('e').length, answered: c.of('R').length + c.of('E').length }));
  },
  // Requests for large answers while not reading them, until the test says so.
  async 'no-read'(c, m) {
    c.socket.pause();
    for (let i = 0; i < 64; i++) await c.send({ t: 'r', id: 'b' + String(i).padStart(3, '0'), name: 'big' }, String(MiB));
    await c.send({ t: 'n', name: 'sent-all' });
    await new Promise((resolve) => { c.readAgain = resolve; });
    c.socket.resume();
    const big = () => c.log.filter((x) => x.type === 'R' && x.id[0] === 'b').length;
    const refused = () => c.log.filter((x) => x.type === 'e' && x.id[0] === 'b').length;
    await c.waitFor(() => big() + refused() >= 64);
    await c.send({ t: 'R', id: m.id }, JSON.stringify({ big: big(), refused: refused() }));
  },
};

async function serve(c) {
  for (;;) {
    let m;
    try { m = await c.next(); } catch { return; }
    if (m.type === 'p') continue;
    const attack = attacks[m.name];
    if (!attack) continue;
    await attack(c, m);
  }
}

let server, client;
test.before(async () => {
  server = await startRawServer({ onConn: serve });
  client = spawnClient();
  await client.call('open', { name: 'other', url: server.wsUrl });
});
test.after(async () => {
  await client.kill();
  await server.close();
});

const held = async () => (await client.call('mem')).held;
const mib = (n) => (n / MiB).toFixed(1) + ' MiB';
async function fresh(name, options) {
  await client.call('open', { name, url: server.wsUrl, options });
  await client.call('request', { sock: name, op: 'echo', value: 'warm-up' });
}
async function stillServed(name) {
  assert.deepEqual((await client.call('request', { sock: name, op: 'echo', value: { ok: name } })).value, { ok: name });
  assert.deepEqual((await client.call('request', { sock: 'other', op: 'echo', value: 'other' })).value, 'other');
}
function rejection(p) {
  return p.then((v) => assert.fail('expected an error, got ' + JSON.stringify(v)), (e) => e);
}

test('stream parts for a single request: fails at maxPayloadSize, the rest is dropped', GUARD, async (t) => {
  await fresh('a');
  const before = await held();
  const err = await rejection(client.call('request', { sock: 'a', op: 'single-spam', raw: true }));
  assert.equal(err.limit, 'maxPayloadSize');
  assert.match(err.message, /stream result.*too large.*maxPayloadSize 16777216/);
  // The echo is answered after all 160 MiB were sent: they have all been read by then.
  await stillServed('a');
  const grown = (await held()) - before;
  t.diagnostic(`client grew by ${mib(grown)}`);
  assert.ok(grown < MAX_PAYLOAD + RUNTIME_SLACK, `client grew by ${mib(grown)} after 160 MiB of parts`);
});

test('stream parts for many single requests: all of them together stay under streamBufferLimit', GUARD, async (t) => {
  await fresh('a2');
  const before = await held();
  // 8 x 15 MiB: each request alone stays under maxPayloadSize.
  const outcomes = [];
  for (let i = 0; i < 8; i++) {
    outcomes.push(client.call('request', { sock: 'a2', op: 'single-fill', raw: true }).then(() => null, (e) => e));
  }
  await stillServed('a2');
  const grown = (await held()) - before;
  t.diagnostic(`client grew by ${mib(grown)}`);
  assert.ok(grown < STREAM_BUFFER + RUNTIME_SLACK, `client grew by ${mib(grown)} after 120 MiB of parts`);
  await client.call('end', { sock: 'a2' });
  const errors = await Promise.all(outcomes);
  const limited = errors.filter((e) => e && e.limit === 'streamBufferLimit').length;
  assert.ok(limited >= 8 - Math.floor(STREAM_BUFFER / (16 * MiB)), `${limited} requests hit the limit`);
  assert.ok(errors.every((e) => e), 'every request settled with an error');
});

test('stream parts nobody consumes: the stream ends at streamBufferLimit, memory stays under it', GUARD, async (t) => {
  await fresh('b');
  const before = await held();
  const { handle } = await client.call('stream', { sock: 'b', op: 'stream-spam', consume: 'none' });
  await stillServed('b');
  const grown = (await held()) - before;
  t.diagnostic(`client grew by ${mib(grown)}`);
  const end = await client.call('streamEnd', { handle });
  assert.equal(end.error.limit, 'streamBufferLimit');
  assert.match(end.error.message, /stream buffer full/);
  assert.ok(grown < STREAM_BUFFER + RUNTIME_SLACK, `client grew by ${mib(grown)} after 160 MiB of parts`);
});

test('a flood of 1-byte parts is charged per part, not just per byte', GUARD, async (t) => {
  await fresh('c');
  const before = await held();
  const { handle } = await client.call('stream', { sock: 'c', op: 'stream-tiny', consume: 'none' });
  await stillServed('c');
  const grown = (await held()) - before;
  t.diagnostic(`client grew by ${mib(grown)}`);
  const end = await client.call('streamEnd', { handle });
  assert.equal(end.error.limit, 'streamBufferLimit');
  // 400,000 parts of 1 byte: about 80 MB if each were kept as its own array.
  assert.ok(400000 * (1 + PART_OVERHEAD) > STREAM_BUFFER, 'the attack must go over the limit');
  assert.ok(grown < STREAM_BUFFER + RUNTIME_SLACK, `client grew by ${mib(grown)}`);
});

test('stream parts consumed as they come are not limited', GUARD, async (t) => {
  await fresh('d');
  const { handle } = await client.call('stream', { sock: 'd', op: 'stream-ok', consume: 'listen' });
  const end = await client.call('streamEnd', { handle });
  assert.deepEqual(end, { error: null, bytes: 64 * MiB, parts: 64, ms: end.ms });
  await stillServed('d');
});

test('a header over maxPayloadSize fails its request at once and the payload is skipped', GUARD, async (t) => {
  await fresh('e');
  const before = await held();
  const err = await rejection(client.call('request', { sock: 'e', op: 'oversized', raw: true }));
  assert.equal(err.limit, 'maxPayloadSize');
  assert.equal(err.message, `payload too large (${64 * MiB} bytes; maxPayloadSize ${MAX_PAYLOAD})`);
  await stillServed('e');   // after the 64 MiB were skipped, the connection goes on
  const grown = (await held()) - before;
  t.diagnostic(`client grew by ${mib(grown)}`);
  assert.ok(grown < RUNTIME_SLACK, `client grew by ${mib(grown)} while skipping 64 MiB`);
});

test('a declared payload is not allocated: the buffer grows with the bytes that arrive', GUARD, async (t) => {
  await fresh('f');
  const before = await held();
  const result = client.call('request', { sock: 'f', op: 'trickle', raw: true });
  const { filled, declared } = await client.call('waitPartial', { sock: 'f', bytes: MiB });
  assert.equal(declared, MAX_PAYLOAD);
  const grown = (await held()) - before;
  t.diagnostic(`client grew by ${mib(grown)}`);
  // At most twice what arrived (the buffer doubles), far from the 16 MiB declared.
  assert.ok(grown < 2 * filled + MiB, `client grew by ${mib(grown)} holding ${mib(filled)} of ${mib(declared)}`);
  // The rest arrives: a result of exactly maxPayloadSize is accepted.
  const conn = server.seen.find((c) => c.trickle);
  await attacks['trickle-rest'](conn);
  const r = await result;
  assert.equal(r.value.length, 64);
  await stillServed('f');
});

test('RetryResult: a wait over maxRetryWait fails at once; a close ends the wait', GUARD, async (t) => {
  await fresh('g');
  let err = await rejection(client.call('request', { sock: 'g', op: 'retry-forever' }));
  assert.equal(err.isRetry, true);
  assert.equal(err.limit, 'maxRetryWait');
  assert.equal(err.retryAfter, 0xffffffff);
  await stillServed('g');
  const t0 = Date.now();
  err = await rejection(client.call('request', { sock: 'g', op: 'retry-then-close' }));
  assert.match(err.message, /going away/);
  assert.ok(Date.now() - t0 < 20000, 'must not wait out the 20 s once the connection closed');
  await stillServed('other');
});

test('a protocol violation closes with ProtocolError 2 and fails what is pending', GUARD, async (t) => {
  await fresh('h');
  const pending = rejection(client.call('request', { sock: 'h', op: 'silent' }));
  const err = await rejection(client.call('request', { sock: 'h', op: 'garbage' }));
  assert.equal(err.isGotalkProtocolError, true);
  assert.equal(err.code, 2);
  assert.equal((await pending).code, 2);
  // The server saw "f00000002", then the close status 4002.
  const conn = server.seen.find((c) => c.tag === 'garbage');
  assert.equal(await conn.waitClose(), 4002);
  assert.deepEqual(conn.log.filter((m) => m.type === 'f').map((m) => m.code), [2]);
  assert.equal((await client.call('lastClose', { sock: 'h' })).code, 2);
  await stillServed('other');
});

test('requests the server never answers: requestTimeout, and maxPendingRequests', GUARD, async (t) => {
  await fresh('i', { requestTimeout: 200 });
  const err = await rejection(client.call('request', { sock: 'i', op: 'silent' }));
  assert.equal(err.limit, 'requestTimeout');
  await fresh('j');
  const max = DEFAULTS.maxPendingRequests;
  const r = await client.call('flood', { sock: 'j', op: 'silent', n: max + 10 });
  assert.equal(r.refused, 10);
  assert.equal(r.first.limit, 'maxPendingRequests');
  await client.call('end', { sock: 'j' });
  await stillServed('other');
});

test('requests from the server beyond maxIncomingRequests get RetryResults', GUARD, async (t) => {
  await fresh('k');
  const r = (await client.call('request', { sock: 'k', op: 'push-hang' })).value;
  assert.equal(r.retries, 1000 - DEFAULTS.maxIncomingRequests);
  assert.equal(r.answered, 0);
  await stillServed('k');
});

test('a server that does not read our answers: refused once maxPayloadSize bytes wait unsent', GUARD, async (t) => {
  await fresh('l');
  const before = await held();
  const outcome = client.call('request', { sock: 'l', op: 'no-read' });
  await client.call('waitNote', { sock: 'l', name: 'sent-all' });
  const grown = (await held()) - before;
  t.diagnostic(`client grew by ${mib(grown)}`);
  // 64 answers of 1 MiB were asked for; at most maxPayloadSize (+ the answer that crossed it)
  // may wait in the client, and Node's WebSocket holds each waiting frame twice in external
  // memory (measured: +77 MiB for 37 MiB of bufferedAmount).
  assert.ok(grown < 2 * (MAX_PAYLOAD + MiB) + RUNTIME_SLACK, `client grew by ${mib(grown)}`);
  server.seen.find((c) => c.readAgain).readAgain();
  const r = (await outcome).value;
  assert.ok(r.refused > 0 && r.big + r.refused === 64, JSON.stringify(r));
  assert.ok(r.big * MiB <= MAX_PAYLOAD + MiB + 8 * MiB, JSON.stringify(r));
  await stillServed('l');
});
