'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const { connect, gotalk } = require('../test-support/helpers.js');

const flush = () => new Promise((r) => setImmediate(r));

test('RetryResult: waits `wait` ms, then re-sends the same request', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const { s, ws, peer } = connect();
  const p = s.bufferRequest('echo', 'data');
  const first = await peer.next();
  peer.send({ t: 'e', id: first.id, wait: 1000 }, 'request rate limit');
  await flush();
  assert.equal(peer.messages.filter((m) => m.type === 'r').length, 0);
  t.mock.timers.tick(999);
  await flush();
  assert.equal(peer.messages.filter((m) => m.type === 'r').length, 0);
  t.mock.timers.tick(1);
  const again = await peer.next();
  assert.deepEqual([again.type, again.id, again.name, again.text], ['r', first.id, 'echo', 'data']);
  peer.send({ t: 'R', id: again.id }, 'data');
  assert.equal(String(await p), 'data');
  void ws;
});

test('RetryResult with wait 0 re-sends right away; gives up after maxRetries with retryAfter', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const { s, peer } = connect({ maxRetries: 2 });
  const p = s.request('limited', { a: 1 });
  const outcome = p.then(() => assert.fail('should fail'), (e) => e);
  let m = await peer.next();
  peer.send({ t: 'e', id: m.id, wait: 0 }, 'busy');
  t.mock.timers.tick(0);
  m = await peer.next();
  peer.send({ t: 'e', id: m.id, wait: 250 }, 'busy');
  t.mock.timers.tick(250);
  m = await peer.next();
  assert.equal(m.text, '{"a":1}');
  peer.send({ t: 'e', id: m.id, wait: 1000 }, 'request rate limit');
  const err = await outcome;
  assert.equal(err.isRetry, true);
  assert.equal(err.retryAfter, 1000);
  assert.equal(err.wait, 1000);
  assert.equal(err.retries, 2);
  assert.match(err.message, /request rate limit.*retry after 1000 ms/);
});

test('maxRetries = 0 fails on the first RetryResult; stream requests are not retried', async () => {
  const { s, peer } = connect({ maxRetries: 0 });
  const p = s.bufferRequest('x', 'y');
  const m = await peer.next();
  peer.send({ t: 'e', id: m.id, wait: 5 }, 'later');
  await assert.rejects(p, (e) => e.retryAfter === 5);
  const req = s.streamRequest('st');
  const ended = new Promise((resolve) => req.on('end', resolve));
  req.write('a');
  const sm = await peer.next();
  peer.send({ t: 'e', id: sm.id, wait: 7 }, 'stream rate limit');
  const err = await ended;
  assert.equal(err.retryAfter, 7);
});

test('a connection closing while waiting to retry fails the request', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const { s, ws, peer } = connect();
  const p = s.bufferRequest('x', 'y');
  const m = await peer.next();
  peer.send({ t: 'e', id: m.id, wait: 1000 }, 'later');
  ws.serverClose(1001);
  await assert.rejects(p, /going away/);
  t.mock.timers.tick(1000);
  void gotalk;
});
