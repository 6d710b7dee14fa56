'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const { connect, tick, gotalk } = require('../test-support/helpers.js');

test('outgoing stream request: s then p parts then empty p; S results as data, then end', async () => {
  const { s, peer } = connect();
  const req = s.streamRequest('stream-echo');
  assert.equal(req.op, 'stream-echo');
  const data = [];
  let ended = 'no';
  req.on('data', (b) => data.push(String(b)));
  req.on('end', (err) => { ended = err; });
  req.write('part-one');
  req.write(new TextEncoder().encode('part-two'));
  req.end();
  req.write('ignored after end');
  const got = [];
  for (let i = 0; i < 3; i++) got.push(await peer.next());
  assert.deepEqual(got.map((m) => [m.type, m.id, m.name, m.text]), [
    ['s', '!000', 'stream-echo', 'part-one'],
    ['p', '!000', null, 'part-two'],
    ['p', '!000', null, ''],
  ]);
  peer.send({ t: 'S', id: '!000' }, 'part-one');
  peer.send({ t: 'S', id: '!000' }, 'part-two');
  peer.send({ t: 'S', id: '!000' }, '');
  await tick();
  assert.deepEqual(data, ['part-one', 'part-two']);
  assert.equal(ended, null);
});

test('outgoing stream request: end() alone sends s and an empty p; ErrorResult ends with error', async () => {
  const { s, peer } = connect();
  const req = s.streamRequest('stream-disabled');
  req.end();
  const [a, b] = [await peer.next(), await peer.next()];
  assert.deepEqual([a.type, a.size, b.type, b.size], ['s', 0, 'p', 0]);
  const ended = new Promise((resolve) => req.on('end', resolve));
  peer.send({ t: 'E', id: a.id }, 'stream requests not supported');
  const err = await ended;
  assert.equal(err.message, 'stream requests not supported');
});

test('outgoing stream request results are async iterable', async () => {
  const { s, peer } = connect();
  const req = s.streamRequest('x');
  req.write('a');
  const m = await peer.next();
  peer.send({ t: 'S', id: m.id }, 'r1');
  peer.send({ t: 'S', id: m.id }, 'r2');
  peer.send({ t: 'S', id: m.id }, '');
  const out = [];
  for await (const chunk of req) out.push(String(chunk));
  assert.deepEqual(out, ['r1', 'r2']);
});

test('answers an incoming stream request with a stream handler', async () => {
  const h = gotalk.Handlers();
  h.handleStreamRequest('upper', (sock, op, input, output) => {
    assert.ok(sock instanceof gotalk.Sock);
    assert.equal(op, 'upper');
    input.on('data', (b) => output.write(String(b).toUpperCase()));
    input.on('end', () => output.end());
  });
  const { peer } = connect({}, h);
  peer.send({ t: 's', id: 'X001', name: 'upper' }, 'one');
  peer.send({ t: 'p', id: 'X001' }, 'two');
  peer.send({ t: 'p', id: 'X001' }, '');
  const got = [];
  for (let i = 0; i < 3; i++) got.push(await peer.next());
  assert.deepEqual(got.map((m) => [m.type, m.id, m.text]), [
    ['S', 'X001', 'ONE'], ['S', 'X001', 'TWO'], ['S', 'X001', ''],
  ]);
});

test('stream handler with async iteration and a returned promise; errors become ErrorResults', async () => {
  const h = gotalk.Handlers();
  h.handleStreamRequest('sum', async (sock, op, input, output) => {
    let n = 0;
    for await (const chunk of input) n += Number(String(chunk));
    output.write(String(n));
    output.end();
  });
  h.handleStreamRequest('boom', async () => { throw new Error('stream boom'); });
  h.handleBufferRequest('buffer-only', (b, r) => r(b));
  const { peer } = connect({}, h);
  peer.send({ t: 's', id: 'A000', name: 'sum' }, '1');
  peer.send({ t: 'p', id: 'A000' }, '2');
  peer.send({ t: 'p', id: 'A000' }, '39');
  peer.send({ t: 'p', id: 'A000' }, '');
  peer.send({ t: 's', id: 'B000', name: 'boom' }, '');
  peer.send({ t: 's', id: 'C000', name: 'buffer-only' }, 'x');
  peer.send({ t: 'p', id: 'C000' }, 'ignored');
  peer.send({ t: 'p', id: 'C000' }, '');
  peer.send({ t: 's', id: 'D000', name: 'missing' }, 'x');
  peer.send({ t: 'p', id: 'Z000' }, 'part for a stream that never started');
  const got = {};
  for (let i = 0; i < 6; i++) {
    const m = await peer.next();
    (got[m.id] = got[m.id] || []).push(m.type + ':' + m.text);
  }
  assert.deepEqual(got, {
    A000: ['S:42', 'S:'],
    B000: ['E:stream boom'],
    C000: ['E:stream requests not supported'],
    D000: ['E:unknown operation "missing"'],
    Z000: ['E:no stream request with this id'],
  });
  await tick();
  assert.equal(peer.messages.filter((m) => m.type !== 'h').length, 0);
});

test('a reused stream id does not disturb the running stream', async () => {
  const h = gotalk.Handlers();
  let calls = 0;
  h.handleStreamRequest('echo', (sock, op, input, output) => {
    calls++;
    input.on('data', (b) => output.write(b));
    input.on('end', () => output.end());
  });
  const { peer } = connect({}, h);
  peer.send({ t: 's', id: 'R000', name: 'echo' }, 'a');
  peer.send({ t: 's', id: 'R000', name: 'echo' }, 'b');
  peer.send({ t: 'p', id: 'R000' }, '');
  const got = [];
  for (let i = 0; i < 2; i++) got.push((await peer.next()).text);
  assert.deepEqual(got, ['a', '']);
  assert.equal(calls, 1);
});
