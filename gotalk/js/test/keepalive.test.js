'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const { FakeWebSocket, Peer, gotalk } = require('../test-support/helpers.js');

// Advance fake time in small steps and record when new WebSocket connections are attempted.
function attemptTimes(t, until, onAttempt) {
  const times = [];
  let seen = 0;
  for (let now = 0; now <= until; now += 50) {
    if (now) t.mock.timers.tick(50);
    while (FakeWebSocket.instances.length > seen) {
      const ws = FakeWebSocket.instances[seen++];
      times.push(now);
      onAttempt(ws, now);
    }
  }
  return times;
}

const gaps = (times) => times.slice(1).map((x, i) => x - times[i]);

test('keep-alive: failed connects back off exponentially from min to max', (t) => {
  t.mock.timers.enable({ apis: ['setTimeout', 'Date'] });
  FakeWebSocket.reset();
  const s = gotalk.connection('ws://down/', { WebSocket: FakeWebSocket, heartbeatInterval: 0 });
  assert.ok(s instanceof gotalk.Sock);
  let closes = 0;
  s.on('close', (err) => { closes++; assert.match(err.message, /connection failed/); });
  const times = attemptTimes(t, 25000, (ws) => ws.refuse());
  assert.equal(times[0], 0);
  assert.deepEqual(gaps(times).slice(0, 7), [500, 1000, 2000, 4000, 5000, 5000, 5000]);
  assert.equal(closes, times.length);
  s.end();
  const n = FakeWebSocket.instances.length;
  t.mock.timers.tick(60000);
  assert.equal(FakeWebSocket.instances.length, n, 'no attempts after end()');
});

test('keep-alive: custom delays; back-off resets after a successful connection', (t) => {
  t.mock.timers.enable({ apis: ['setTimeout', 'Date'] });
  FakeWebSocket.reset();
  const s = gotalk.Sock(gotalk.Handlers(), {
    WebSocket: FakeWebSocket, heartbeatInterval: 0, minReconnectDelay: 100, maxReconnectDelay: 1000,
  });
  s.openKeepAlive('ws://flaky/');
  let opens = 0;
  s.on('open', () => opens++);
  let n = 0;
  const times = attemptTimes(t, 6000, (ws) => {
    n++;
    if (n === 4) {
      // the 4th attempt succeeds and stays up for 2 s, then the server drops it
      new Peer(ws);
      setTimeout(() => ws.serverClose(1006), 2000);
    } else {
      ws.refuse();
    }
  });
  assert.equal(opens, 1);
  // 3 failures: 100, 200, 400; success; lived 2 s (> min) so reconnect at once; then 100, 200...
  assert.deepEqual(gaps(times).slice(0, 6), [100, 200, 400, 2000, 100, 200]);
  s.end();
});

test('keep-alive: requests made while reconnecting are kept and sent after reconnecting', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout', 'Date'] });
  FakeWebSocket.reset();
  const s = gotalk.connection('ws://x/', { WebSocket: FakeWebSocket, heartbeatInterval: 0, handlers: gotalk.Handlers() });
  FakeWebSocket.instances[0].refuse();
  const p = s.request('later', 1);
  assert.equal(FakeWebSocket.instances.length, 1);
  t.mock.timers.tick(500);
  assert.equal(FakeWebSocket.instances.length, 2);
  const peer = new Peer(FakeWebSocket.instances[1]);
  const m = await peer.next();
  assert.deepEqual([m.name, m.text], ['later', '1']);
  peer.send({ t: 'R', id: m.id }, '2');
  assert.equal(await p, 2);
  s.end();
});

test('keep-alive: a protocol error waits the max delay; end() fails kept requests', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout', 'Date'] });
  FakeWebSocket.reset();
  const s = gotalk.connection('ws://x/', { WebSocket: FakeWebSocket, heartbeatInterval: 0, handlers: gotalk.Handlers() });
  new Peer(FakeWebSocket.instances[0]);
  FakeWebSocket.instances[0].receiveBinary('?');
  await Promise.resolve();
  assert.equal(FakeWebSocket.instances[0].closeCode, 4002);
  t.mock.timers.tick(4999);
  assert.equal(FakeWebSocket.instances.length, 1);
  t.mock.timers.tick(1);
  assert.equal(FakeWebSocket.instances.length, 2);
  const p = s.request('x', 1);
  s.end();
  await assert.rejects(p, /closed/);
});

test('keep-alive: waits for the "online" event while offline', (t) => {
  t.mock.timers.enable({ apis: ['setTimeout', 'Date'] });
  FakeWebSocket.reset();
  const listeners = {};
  const saved = { addEventListener: globalThis.addEventListener, removeEventListener: globalThis.removeEventListener,
                  navigator: Object.getOwnPropertyDescriptor(globalThis, 'navigator') };
  const nav = { onLine: true };
  globalThis.addEventListener = (e, fn) => { (listeners[e] = listeners[e] || []).push(fn); };
  globalThis.removeEventListener = (e, fn) => { listeners[e] = (listeners[e] || []).filter((f) => f !== fn); };
  Object.defineProperty(globalThis, 'navigator', { value: nav, configurable: true, writable: true });
  try {
    const s = gotalk.connection('ws://example.com/gotalk/', { WebSocket: FakeWebSocket, heartbeatInterval: 0, handlers: gotalk.Handlers() });
    new Peer(FakeWebSocket.instances[0]);
    nav.onLine = false;
    FakeWebSocket.instances[0].serverClose(1006);
    t.mock.timers.tick(60000);
    assert.equal(FakeWebSocket.instances.length, 1, 'no attempts while offline');
    assert.equal(s.keepalive.waitingForOnline, true);
    nav.onLine = true;
    listeners.online.forEach((fn) => fn({ type: 'online' }));
    assert.equal(FakeWebSocket.instances.length, 2, 'reconnects when back online');
    s.end();
    assert.equal(listeners.online.length, 0, 'listener removed on end()');
  } finally {
    if (saved.addEventListener) globalThis.addEventListener = saved.addEventListener; else delete globalThis.addEventListener;
    if (saved.removeEventListener) globalThis.removeEventListener = saved.removeEventListener; else delete globalThis.removeEventListener;
    if (saved.navigator) Object.defineProperty(globalThis, 'navigator', saved.navigator); else delete globalThis.navigator;
  }
});
