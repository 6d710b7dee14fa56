'use strict';
// openKeepAlive (gotalk.connection()) against a Rust server that goes away and comes back on
// the same port: the page reconnects by itself, and a request made while the server was down
// waits in the send buffer and is answered after the reconnect.
const test = require('node:test');
const assert = require('node:assert/strict');
const { startServer, launchBrowser } = require('./support.js');

test('gotalk.connection() reconnects after the server restarts', async (t) => {
  let server = await startServer('websocket-test-server');
  const port = server.port;
  const browser = await launchBrowser();
  t.after(async () => { await browser.close(); await server.stop(); });

  const page = await browser.newPage(server.url);
  await page.evaluate(() => {
    window.events = [];
    window.k = gotalk.connection()
      .on('open', () => window.events.push('open'))
      .on('close', () => window.events.push('close'));
  });
  await page.waitForFunction(() => window.events.includes('open'));
  assert.deepEqual(await page.evaluate(() => window.k.request('greet', { name: 'one' })),
                   { greeting: 'Hello one' });

  await server.stop();
  await page.waitForFunction(() => window.events.includes('close'));
  // Asked while disconnected: buffered until the connection is back.
  await page.evaluate(() => {
    window.queued = window.k.request('greet', { name: 'queued' }).then(
      (v) => v.greeting, (e) => 'error: ' + e.message);
  });

  server = await startServer('websocket-test-server', ['--addr', `127.0.0.1:${port}`]);
  await page.waitForFunction(() => window.events.filter((e) => e === 'open').length === 2,
                             null, { timeout: 30000 });
  assert.equal(await page.evaluate(() => window.queued), 'Hello queued');
  assert.deepEqual(await page.evaluate(() => window.k.request('greet', { name: 'two' })),
                   { greeting: 'Hello two' });
  assert.deepEqual(await page.evaluate(() => window.events), ['open', 'close', 'open']);
});
