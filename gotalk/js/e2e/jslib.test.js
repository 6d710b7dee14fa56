'use strict';
// gotalk.js as the Rust server serves it to Chromium: gzip, an ETag, and a 304 when the
// browser revalidates its cached copy.
const test = require('node:test');
const assert = require('node:assert/strict');
const { startServer, launchBrowser } = require('./support.js');

test('gotalk.js is served with an ETag, gzip, and 304 on revalidation', async (t) => {
  const server = await startServer('websocket-test-server');
  const browser = await launchBrowser();
  t.after(async () => { await browser.close(); await server.stop(); });

  const page = await browser.newPage();
  const seen = [];
  page.on('response', (res) => {
    if (res.url().endsWith('/gotalk.js')) seen.push(res.status());
  });
  await page.goto(server.url);
  await page.waitForFunction(() => typeof window.gotalk === 'object');
  // The second load revalidates (Cache-Control: no-cache) and gets 304: the cached copy runs.
  await page.reload();
  await page.waitForFunction(() => typeof window.gotalk === 'object');
  const works = await page.evaluate(() => new Promise((resolve) => {
    gotalk.open((err, s) => (err ? resolve(err.message) : s.request('greet', { name: 'cache' }).then(
      (v) => resolve(v.greeting), (e) => resolve(e.message))));
  }));
  assert.equal(works, 'Hello cache');

  // What the server answered, as it recorded it.
  const log = await page.evaluate(() => new Promise((resolve, reject) => {
    gotalk.open((err, s) => (err ? reject(err) : s.request('js-log').then(resolve, reject)));
  }));
  assert.equal(log.length, 2, JSON.stringify(log));
  const [first, second] = log;
  assert.equal(first.status, 200);
  assert.equal(first.ifNoneMatch, null);
  assert.match(first.etag, /^"[0-9a-f]{40}"$/);
  assert.equal(first.encoding, 'gzip');
  assert.match(first.contentType, /^application\/javascript/);
  assert.equal(second.status, 304);
  assert.equal(second.ifNoneMatch, first.etag);
  assert.equal(second.etag, first.etag);
  // The browser's own view agrees (DevTools shows revalidations as 304).
  assert.deepEqual(seen, [200, 304]);
});
