'use strict';
// gotalk.js in headless Chromium against the Rust WebSocket server (websocket-test-server):
// requests both ways, notifications both ways, stream requests both ways, the upgrade request
// as the server sees it, and protocol errors as WebSocket close codes.
const test = require('node:test');
const assert = require('node:assert/strict');
const { startServer, launchBrowser } = require('./support.js');

let server;
let browser;
let page;

test.before(async () => {
  server = await startServer('websocket-test-server');
  browser = await launchBrowser();
  page = await browser.newPage(server.url);
  // One connection for the whole file, to the default address (derived from the script URL).
  await page.evaluate(async () => {
    window.pings = [];
    gotalk.handleBufferRequest('client-op', async (buf) => Uint8Array.from(buf).reverse());
    gotalk.handle('client-json', async (v) => ({ youSent: v, from: 'page' }));
    gotalk.handleStreamRequest('client-stream', async (sock, op, input, output) => {
      for await (const part of input) output.write(part.toString().toUpperCase());
      output.end();
    });
    gotalk.handleNotification('ping', (v) => window.pings.push(v));
    window.s = await new Promise((resolve, reject) => {
      gotalk.open((err, s) => (err ? reject(err) : resolve(s)));
    });
  });
});

test.after(async () => {
  if (browser) await browser.close();
  if (server) await server.stop();
});

test('the default responder address is where gotalk.js was loaded from', async () => {
  const addr = await page.evaluate(() => gotalk.defaultResponderAddress);
  assert.equal(addr, `ws://127.0.0.1:${server.port}/gotalk/`);
  assert.equal(await page.evaluate(() => window.s.address()), addr);
});

test('loaded without a <script> URL (eval), gotalk.js still finds the mount', async () => {
  // document.currentScript is null here, so the one-line prefix the server adds supplies the
  // mount path instead.
  const addr = await page.evaluate(async () => {
    const text = await (await fetch('/gotalk/gotalk.js')).text();
    const saved = window.gotalk;
    (0, eval)(text);
    const found = window.gotalk.defaultResponderAddress;
    window.gotalk = saved;
    return found;
  });
  assert.equal(addr, `ws://127.0.0.1:${server.port}/gotalk/`);
});

test('page -> server JSON request', async () => {
  const out = await page.evaluate(() => window.s.request('greet', { name: 'Chromium ✓' }));
  assert.deepEqual(out, { greeting: 'Hello Chromium ✓' });
  // The callback form too.
  const cb = await page.evaluate(() => new Promise((resolve) => {
    window.s.request('greet', { name: 'cb' }, (err, v) => resolve(err ? err.message : v));
  }));
  assert.deepEqual(cb, { greeting: 'Hello cb' });
});

test('page -> server buffer requests: text, binary, empty and 1 MiB', async () => {
  const r = await page.evaluate(async () => {
    const s = window.s;
    const text = (await s.bufferRequest('echo', 'hello ✓ é')).toString();
    const bin = Array.from(await s.bufferRequest('echo', new Uint8Array([0, 1, 2, 255, 0, 10, 13])));
    const empty = (await s.bufferRequest('echo', new Uint8Array(0))).length;
    const big = new Uint8Array(1 << 20);
    for (let i = 0; i < big.length; i++) big[i] = (i * 7) & 0xff;
    const back = await s.bufferRequest('echo', big);
    let same = back.length === big.length;
    for (let i = 0; same && i < big.length; i++) same = back[i] === big[i];
    return { text, bin, empty, same };
  });
  assert.deepEqual(r, { text: 'hello ✓ é', bin: [0, 1, 2, 255, 0, 10, 13], empty: 0, same: true });
});

test('errors: a handler error and an unknown operation', async () => {
  const r = await page.evaluate(async () => {
    const msg = async (p) => p.then(() => 'no error', (e) => e.message);
    return [await msg(window.s.request('fail', {})), await msg(window.s.request('no-such-op', 1))];
  });
  assert.match(r[0], /nope/);
  assert.match(r[1], /unknown operation "no-such-op"/);
});

test('many requests in flight at once', async () => {
  const ok = await page.evaluate(async () => {
    const all = [];
    for (let i = 0; i < 200; i++) all.push(window.s.request('greet', { name: 'n' + i }));
    const out = await Promise.all(all);
    return out.every((v, i) => v.greeting === 'Hello n' + i);
  });
  assert.equal(ok, true);
});

test('server -> page requests (buffer and JSON), made while answering the page', async () => {
  const r = await page.evaluate(async () => ({
    buf: (await window.s.bufferRequest('call-back', 'abc✓')).length,
    reversed: Array.from(await window.s.bufferRequest('call-back', new Uint8Array([1, 2, 3]))),
    json: await window.s.request('call-back-json', { x: 1 }),
  }));
  assert.equal(r.buf, 6);
  assert.deepEqual(r.reversed, [3, 2, 1]);
  assert.deepEqual(r.json, { youSent: { x: 1 }, from: 'page' });
});

test('notifications both ways', async () => {
  const r = await page.evaluate(async () => {
    const ok = await window.s.request('notify-me', 42);
    window.s.notify('hello', { from: 'page', n: 1 });
    window.s.bufferNotify('raw', 'bytes ✓');
    const notes = await window.s.request('notes');
    return { ok, pings: window.pings, notes };
  });
  assert.equal(r.ok, 'ok');
  assert.deepEqual(r.pings, [{ n: 42 }]);
  assert.deepEqual(r.notes, [['hello', '{"from":"page","n":1}'], ['raw', 'bytes ✓']]);
});

test('page -> server stream request', async () => {
  const parts = await page.evaluate(() => new Promise((resolve, reject) => {
    const got = [];
    const req = window.s.streamRequest('stream-echo');
    req.on('data', (buf) => got.push(buf.toString()));
    req.on('end', (err) => (err ? reject(err) : resolve(got)));
    req.write('one');
    req.write(new Uint8Array([0x74, 0x77, 0x6f]));
    req.write('three ✓');
    req.end();
  }));
  assert.deepEqual(parts, ['one', 'two', 'three ✓']);
});

test('server -> page stream request', async () => {
  const back = await page.evaluate(() => window.s.request('call-stream', ['a', 'bc', 'déf']));
  assert.deepEqual(back, ['A', 'BC', 'DÉF']);
});

test('the server sees the upgrade request: path, origin, host, user agent, peer', async () => {
  const who = await page.evaluate(() => window.s.request('whoami'));
  assert.equal(who.path, '/gotalk/');
  assert.equal(who.origin, `http://127.0.0.1:${server.port}`);
  assert.equal(who.host, `127.0.0.1:${server.port}`);
  assert.match(who.userAgent, /Chrome/);
  assert.match(who.peer, /^127\.0\.0\.1:\d+$/);
});

test('each version, header and payload arrives as its own WebSocket message', async () => {
  // A raw WebSocket from the page, speaking the protocol by hand and framing it oddly: the
  // version and half a request in one message, the rest in another.
  const frames = await page.evaluate((url) => new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
    ws.binaryType = 'arraybuffer';
    const got = [];
    ws.onmessage = (ev) => {
      const text = typeof ev.data === 'string' ? 'text:' + ev.data : new TextDecoder().decode(ev.data);
      if (/^h[0-9a-f]{12}$/.test(text)) return; // a heartbeat
      got.push(text);
      if (got.length === 3) { ws.close(); resolve(got); }
    };
    ws.onerror = () => reject(new Error('websocket error'));
    ws.onopen = () => { ws.send('01r0001004ec'); ws.send(new TextEncoder().encode('ho00000002hi')); };
  }), `ws://127.0.0.1:${server.port}/gotalk/`);
  assert.deepEqual(frames, ['01', 'R000100000002', 'hi']);
});

test('a protocol error closes the WebSocket with 4000 + code', async () => {
  const r = await page.evaluate((url) => new Promise((resolve) => {
    const ws = new WebSocket(url);
    ws.binaryType = 'arraybuffer';
    const got = [];
    ws.onmessage = (ev) => got.push(new TextDecoder().decode(ev.data));
    ws.onopen = () => { ws.send('01'); ws.send('zzzz'); };
    ws.onclose = (ev) => resolve({ code: ev.code, got });
  }), `ws://127.0.0.1:${server.port}/gotalk/`);
  assert.equal(r.code, 4002);
  assert.equal(r.got[0], '01');
  assert.equal(r.got[r.got.length - 1], 'f00000002');
});

test('gotalk.js surfaces the close as a protocol error', async () => {
  // A second Sock whose handshake the server answers normally, then it sends garbage through
  // the Sock's own WebSocket: the server answers with f00000002 and close 4002.
  const r = await page.evaluate(() => new Promise((resolve) => {
    gotalk.open((err, s) => {
      if (err) return resolve({ err: err.message });
      s.on('close', (e) => resolve({ isProto: !!(e && e.isGotalkProtocolError), code: e && e.code }));
      s.ws.send('zzzz');
    });
  }));
  assert.deepEqual(r, { isProto: true, code: 2 });
});
