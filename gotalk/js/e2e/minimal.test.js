'use strict';
// The websocket-minimal example as its doc comment runs it (no arguments): it starts beside
// whatever holds the demo's port 1235, prints its URL, and its page echoes in Chromium.
const test = require('node:test');
const assert = require('node:assert/strict');
const net = require('node:net');
const { startServer, launchBrowser } = require('./support.js');

test('websocket-minimal runs beside the demo\'s port and echoes in the page', async (t) => {
  // Hold 1235 as a running demo would (if something else has it, that is the same case).
  const demoPort = net.createServer();
  await new Promise((resolve) => {
    demoPort.once('error', resolve);
    demoPort.listen(1235, '127.0.0.1', resolve);
  });
  const server = await startServer('websocket-minimal', []);
  const browser = await launchBrowser();
  t.after(async () => { await browser.close(); await server.stop(); demoPort.close(); });
  assert.notEqual(server.port, 1235);

  const page = await browser.newPage(server.url);
  await page.waitForFunction(() => document.getElementById('status').textContent === 'connected');
  await page.fill('#text', 'hello from Chromium');
  await page.click('button');
  await page.waitForFunction(() => document.getElementById('log').textContent.includes('echo → hello from Chromium'));
});
