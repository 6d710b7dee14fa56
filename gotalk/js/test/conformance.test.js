'use strict';
// Replays the browser side of shared/conformance/websocket-gotalkjs-session.json: the frames the
// reference gotalk.js received are fed to our library while it performs the same calls as the
// recorded browser test, and the frames it sends must match the recorded ones in shape
// (frame kind, header, payload; heartbeat timestamps vary).
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { FakeWebSocket, tick, te, td, gotalk } = require('../test-support/helpers.js');

function findTranscript() {
  const rel = path.join('conformance', 'websocket-gotalkjs-session.json');
  const candidates = [
    process.env.GOTALK_CONFORMANCE_DIR && path.join(process.env.GOTALK_CONFORMANCE_DIR, 'websocket-gotalkjs-session.json'),
    path.resolve(__dirname, '../../../../shared', rel),
    path.resolve(__dirname, '../../../shared', rel),
    path.join('/work/shared', rel),
  ].filter(Boolean);
  return candidates.find((p) => fs.existsSync(p));
}

const file = findTranscript();

// Payload bytes of a recorded frame. Big frames are recorded as base64_head + length: rebuild
// them as the head followed by a deterministic filler.
function frameBytes(f) {
  if (f.base64 !== undefined) return Uint8Array.from(Buffer.from(f.base64, 'base64'));
  if (f.base64_head !== undefined) {
    const head = Buffer.from(f.base64_head, 'base64');
    const b = new Uint8Array(f.length);
    b.set(head);
    for (let i = head.length; i < b.length; i++) b[i] = (i * 7) & 0xff;
    return b;
  }
  return te.encode(f.text);
}

test('replays the recorded gotalk.js browser session', { skip: !file && 'transcript not found' }, async () => {
  const session = JSON.parse(fs.readFileSync(file, 'utf8'));
  const frames = session.frames;
  FakeWebSocket.reset();

  const handlers = gotalk.Handlers();
  const pings = [];
  handlers.handleBufferRequest('client-op', (buf, result) => result(Uint8Array.from(buf).reverse()));
  handlers.handleNotification('ping', (v) => pings.push(v));
  const s = gotalk.Sock(handlers, { WebSocket: FakeWebSocket });

  // The calls the recorded browser test made, in order. Each runs when the transcript expects a
  // sent frame that we have not produced yet.
  const results = {};
  const big = frameBytes(frames.find((f) => f.length === 1048576 && f.dir === 'sent'));
  const binary = frameBytes(frames.find((f) => f.base64 === 'AAABAgD//gAKDQA='));
  const actions = [
    () => { results.text = s.bufferRequest('echo', 'hello from gotalk.js ✓ é'); },
    () => { results.binary = s.bufferRequest('echo', binary); },
    () => { results.big = s.bufferRequest('echo', big); },
    () => { results.greet = s.request('greet', { name: 'Browser' }); },
    () => { results.fail = s.request('fail', {}).catch((e) => e); },
    () => { results.unknown = s.bufferRequest('no-such-op', 'x').catch((e) => e); },
  ];
  results.many = [];
  for (let i = 0; i < 100; i++) {
    actions.push(() => { results.many.push(s.bufferRequest('echo', 'req-' + i + '-' + 'x'.repeat(i))); });
  }
  actions.push(() => { results.notifyMe = s.request('notify-me'); });
  actions.push(() => { results.callBack = s.bufferRequest('call-back', 'abc123'); });
  actions.push(() => {
    const req = s.streamRequest('stream-echo');
    results.stream = [];
    results.streamEnd = new Promise((resolve) => req.on('end', resolve));
    req.on('data', (b) => results.stream.push(String(b)));
    req.write('part-one');
    req.write('part-two');
    req.write('part-three');
    req.end();
  });

  let ws = null, sentIdx = 0, compared = 0;
  for (const f of frames) {
    if (f.event === 'open') {
      s.open(f.url);
      ws = FakeWebSocket.instances[0];
      ws.accept();
      continue;
    }
    if (f.dir === 'received') {
      if (f.frame === 'text') ws.receive(f.text); else ws.receive(frameBytes(f));
      continue;
    }
    // sent: make the next call if we have nothing left to compare against
    while (sentIdx >= ws.sent.length && actions.length) actions.shift()();
    const got = ws.sent[sentIdx++];
    assert.ok(got, 'expected a sent frame like ' + JSON.stringify(f).slice(0, 120));
    assert.equal(got.kind, f.frame, 'frame kind of ' + (f.text || f.base64 || '').slice(0, 40));
    const gotBytes = got.kind === 'text' ? te.encode(got.data) : got.data;
    const want = frameBytes(f);
    if (f.text !== undefined && /^h[0-9a-f]{12}$/.test(f.text)) {
      assert.match(td.decode(gotBytes), /^h[0-9a-f]{12}$/);
    } else {
      assert.deepEqual(Buffer.from(gotBytes), Buffer.from(want), 'frame ' + sentIdx);
    }
    compared++;
  }
  assert.equal(actions.length, 0, 'all recorded calls were made');
  assert.equal(sentIdx, ws.sent.length, 'no extra frames sent');
  assert.ok(compared > 200);

  assert.equal(String(await results.text), 'hello from gotalk.js ✓ é');
  assert.deepEqual(Buffer.from(await results.binary), Buffer.from(binary));
  assert.equal((await results.big).length, 1048576);
  assert.deepEqual(await results.greet, { greeting: 'Hello Browser' });
  assert.equal((await results.fail).message, 'nope');
  assert.equal((await results.unknown).message, 'unknown operation "no-such-op"');
  const many = await Promise.all(results.many);
  many.forEach((b, i) => assert.equal(String(b), 'req-' + i + '-' + 'x'.repeat(i)));
  assert.equal(await results.notifyMe, 'ok');
  assert.deepEqual(pings, [{ n: 1 }]);
  assert.equal(String(await results.callBack), '321cba');
  assert.equal(await results.streamEnd, null);
  assert.deepEqual(results.stream, ['part-one', 'part-two', 'part-three']);
  s.end();
  await tick();
});
