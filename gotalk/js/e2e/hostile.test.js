'use strict';
// gotalk.js in headless Chromium against a malicious server: the raw WebSocket server of
// test-support/rawws.js serves the page and gotalk.js, then attacks the page's connection with
// the library's default limits. Memory is the page's JS heap plus ArrayBuffer backing stores
// after a full GC, as Chromium's DevTools protocol reports them.
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { launchBrowser } = require('./support.js');
const { startRawServer } = require('../test-support/rawws.js');
const { protocol } = require('../gotalk.js');

const MiB = 1 << 20;
const ONE_MIB = new Uint8Array(MiB).fill(0x61);
// What the page's runtime may keep besides gotalk.js' own buffers between two quiet points.
const RUNTIME_SLACK = 4 * MiB;

const attacks = {
  async echo(c, m) { await c.send({ t: 'R', id: m.id }, m.payload); },
  async 'single-spam'(c, m) { for (let i = 0; i < 100; i++) if (!await c.send({ t: 'S', id: m.id }, ONE_MIB)) return; },
  async 'stream-spam'(c, m) { for (let i = 0; i < 100; i++) if (!await c.send({ t: 'S', id: m.id }, ONE_MIB)) return; },
  async trickle(c, m) {
    c.trickle = m;
    await c.frame(protocol.encodeHeader({ t: 'R', id: m.id, size: m.payload.length ? Number(String(m.payload)) : 0 }));
    for (let i = 0; i < 16; i++) await c.frame(ONE_MIB.subarray(0, 64 * 1024));
  },
};

async function serve(c) {
  for (;;) {
    let m;
    try { m = await c.next(); } catch { return; }
    if (attacks[m.name]) await attacks[m.name](c, m);
  }
}

const page0 = '<!doctype html><meta charset="utf-8"><title>hostile</title>' +
              '<script src="/gotalk/gotalk.js"></script>';

test('gotalk.js in Chromium against a hostile server: bounded, settled, still serving', { timeout: 120000 }, async (t) => {
  const server = await startRawServer({
    onConn: serve,
    files: {
      '/': { type: 'text/html', body: page0 },
      '/gotalk/gotalk.js': { type: 'application/javascript', body: fs.readFileSync(path.join(__dirname, '..', 'gotalk.js')) },
    },
  });
  const browser = await launchBrowser();
  t.after(async () => { await browser.close(); await server.close(); });
  const page = await browser.newPage(server.url);
  const cdp = await browser.context.newCDPSession(page);
  await cdp.send('HeapProfiler.enable');
  const held = async () => {
    await cdp.send('HeapProfiler.collectGarbage');
    await cdp.send('HeapProfiler.collectGarbage');
    const u = await cdp.send('Runtime.getHeapUsage');
    return u.usedSize + u.embedderHeapUsedSize + u.backingStorageSize;
  };
  const mib = (n) => (n / MiB).toFixed(1) + ' MiB';
  const [maxPayload, streamBuffer] = await page.evaluate(() => {
    const d = gotalk.Sock(gotalk.Handlers());
    return [d.maxPayloadSize, d.streamBufferLimit];
  });
  // Two connections to the default address (ws://127.0.0.1:PORT/gotalk/, from the script URL).
  await page.evaluate(() => Promise.all(['a', 'b'].map((k) => new Promise((resolve, reject) => {
    window[k] = gotalk.open((err) => (err ? reject(err) : resolve()));
  }))));
  const echo = (k, v) => page.evaluate(([k, v]) => window[k].request('echo', v), [k, v]);
  const served = async () => {
    assert.equal(await echo('a', 'still a'), 'still a');
    assert.equal(await echo('b', 'still b'), 'still b');
  };
  await served();

  await t.test('100 x 1 MiB stream parts for a single request', async (st) => {
    const before = await held();
    const err = await page.evaluate(() => a.bufferRequest('single-spam', null)
      .then(() => null, (e) => ({ message: e.message, limit: e.limit })));
    assert.equal(err.limit, 'maxPayloadSize', JSON.stringify(err));
    await served();   // answered after all 100 MiB: they have been read by then
    const grown = (await held()) - before;
    st.diagnostic(`single request: page grew by ${mib(grown)}`);
    assert.ok(grown < maxPayload + RUNTIME_SLACK, `page grew by ${mib(grown)}`);
  });

  await t.test('100 MiB of parts to a stream nobody reads', async (st) => {
    const before = await held();
    await page.evaluate(() => { window.unread = a.streamRequest('stream-spam'); unread.end(); });
    await served();
    const grown = (await held()) - before;
    st.diagnostic(`unread stream: page grew by ${mib(grown)}`);
    assert.ok(grown < streamBuffer + RUNTIME_SLACK, `page grew by ${mib(grown)}`);
    const err = await page.evaluate(async () => {
      try { for await (const c of unread) void c; } catch (e) { return { message: e.message, limit: e.limit }; }
      return null;
    });
    assert.equal(err.limit, 'streamBufferLimit', JSON.stringify(err));
  });

  await t.test('a header announcing maxPayloadSize, and 1 MiB of it', async (st) => {
    const before = await held();
    const result = page.evaluate((n) => a.bufferRequest('trickle', String(n)).then((r) => r.length), maxPayload);
    await page.waitForFunction(() => a._decoder && a._decoder._msg && a._decoder._filled >= 1 << 20);
    const grown = (await held()) - before;
    st.diagnostic(`partial message: page grew by ${mib(grown)}`);
    assert.ok(grown < 2 * MiB + MiB, `page grew by ${mib(grown)} for 1 MiB received of ${mib(maxPayload)}`);
    const conn = server.seen.find((c) => c.trickle);
    for (let sent = MiB; sent < maxPayload; sent += MiB) await conn.frame(ONE_MIB);
    assert.equal(await result, maxPayload);
    await served();
  });
});
