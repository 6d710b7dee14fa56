'use strict';
// The demo (`gotalk serve`) in Chromium as a new user meets it: two pages chat and see each
// other type, nothing fails to load, the logs scroll inside their boxes with the status and
// the inputs in view, a message sent while disconnected says so and shows once after the
// reconnect, the page names no TCP address without TCP, and a page of another origin cannot
// open a WebSocket to the demo.
const test = require('node:test');
const assert = require('node:assert/strict');
const http = require('node:http');
const { startDemo, launchBrowser } = require('./support.js');

/** Opens the demo page; records every response >= 400 and failed request in `page.bad`. */
async function openDemo(browser, url, name) {
  const page = await browser.context.newPage();
  page.bad = [];
  page.on('response', (r) => { if (r.status() >= 400) page.bad.push(`${r.status()} ${r.url()}`); });
  page.on('requestfailed', (r) => page.bad.push(`failed ${r.url()}`));
  page.on('pageerror', (err) => page.bad.push('page error: ' + err.message));
  await page.goto(url);
  await page.waitForFunction(() => document.getElementById('status').textContent === 'connected');
  if (name) await page.fill('#name', name);
  return page;
}

const chatLines = (page, text) => page.evaluate((t) => Array.from(
  document.querySelectorAll('#chat .msg'), (m) => m.lastChild.textContent).filter((x) => x === t).length, text);

/** Whether `sel`'s box lies within the window. */
const inView = (page, sel) => page.evaluate((s) => {
  const r = document.querySelector(s).getBoundingClientRect();
  return r.height > 0 && r.top >= 0 && r.bottom <= window.innerHeight;
}, sel);

test('two pages chat and see each other typing; nothing fails to load; no TCP address', async (t) => {
  const server = await startDemo();
  const browser = await launchBrowser();
  t.after(async () => { await browser.close(); await server.stop(); });

  const alice = await openDemo(browser, server.url, 'alice');
  const bob = await openDemo(browser, server.url, 'bob');

  // Without --tcp the page tells the CLI user this WebSocket address, and no TCP one.
  const hints = await alice.evaluate(() => Array.from(document.querySelectorAll('.cli-addr'), (e) => e.textContent));
  assert.deepEqual(hints, [`ws://127.0.0.1:${server.port}/gotalk/`, `ws://127.0.0.1:${server.port}/gotalk/`]);
  const body = await alice.evaluate(() => document.body.innerText);
  assert.doesNotMatch(body, /tcp:|:1234\b/);

  await alice.fill('#text', 'hello bob');
  await alice.press('#text', 'Enter');
  await bob.waitForFunction(() => document.getElementById('chat').textContent.includes('hello bob'));
  await alice.waitForFunction(() => document.getElementById('chat').textContent.includes('hello bob'));
  assert.equal(await alice.inputValue('#text'), '');

  // Typing shows on the other page (the server relays chat/typing), not on one's own.
  await bob.type('#text', 'wait for it');
  await alice.waitForFunction(() => document.getElementById('typing').textContent === 'bob is typing…');
  assert.equal(await bob.evaluate(() => document.getElementById('typing').textContent), '');
  await bob.press('#text', 'Enter');
  // A message from bob ends his "typing".
  await alice.waitForFunction(() => document.getElementById('chat').textContent.includes('wait for it') &&
    document.getElementById('typing').textContent === '');

  // The icon the page declares is there (no favicon 404), and nothing else failed to load.
  const icon = await alice.evaluate(async () => {
    const r = await fetch(document.querySelector('link[rel=icon]').href);
    return [r.status, r.headers.get('content-type')];
  });
  assert.deepEqual(icon, [200, 'image/svg+xml']);
  assert.deepEqual(alice.bad, []);
  assert.deepEqual(bob.bad, []);
});

test('the logs scroll inside their boxes; the status and the inputs stay in view', async (t) => {
  const server = await startDemo();
  const browser = await launchBrowser();
  t.after(async () => { await browser.close(); await server.stop(); });
  const page = await openDemo(browser, server.url, 'scroller');
  const boxes = () => page.evaluate(() => ['chat', 'console'].map((id) => {
    const b = document.getElementById(id);
    return { client: b.clientHeight, scroll: b.scrollHeight, top: b.scrollTop };
  }));
  const before = await boxes();

  // Hundreds of chat messages and console calls, through the forms.
  await page.evaluate(async () => {
    const form = document.getElementById('chat-form');
    for (let i = 0; i < 300; i++) {
      document.getElementById('text').value = 'line ' + i;
      form.requestSubmit();
    }
    for (let i = 0; i < 150; i++) document.getElementById('console-form').requestSubmit();
  });
  await page.waitForFunction(() => document.querySelectorAll('#chat .msg').length === 300 &&
    document.querySelectorAll('#console pre').length === 300, null, { timeout: 30000 });

  const after = await boxes();
  for (const i of [0, 1]) {
    assert.equal(after[i].client, before[i].client, 'the box keeps its height');
    assert.ok(after[i].scroll > after[i].client * 3, 'its content scrolls inside it');
    assert.ok(after[i].top + after[i].client >= after[i].scroll - 2, 'scrolled to the newest line');
  }
  assert.ok(await page.evaluate(() => document.scrollingElement.scrollHeight <= window.innerHeight),
    'the page itself does not scroll');
  for (const sel of ['#status', '#text', '#send', '#payload', '#call', '#chat .msg:last-child']) {
    assert.ok(await inView(page, sel), sel + ' is in view');
  }
  // Someone reading older messages is not pulled down by new ones.
  await page.evaluate(() => { document.getElementById('chat').scrollTop = 0; });
  await page.evaluate(() => sock.request('chat/send', { name: 'other', text: 'while reading' }));
  await page.waitForFunction(() => document.getElementById('chat').textContent.includes('while reading'));
  assert.equal(await page.evaluate(() => document.getElementById('chat').scrollTop), 0);

  // A narrow window: one column, the page scrolls, the status stays on top.
  await page.setViewportSize({ width: 420, height: 700 });
  await page.evaluate(() => window.scrollTo(0, document.scrollingElement.scrollHeight));
  assert.ok(await page.evaluate(() => window.scrollY > 0), 'the page scrolls');
  assert.ok(await inView(page, '#status'), 'the status stays in view');
  const chat = await page.evaluate(() => {
    const b = document.getElementById('chat');
    return { client: b.clientHeight, scroll: b.scrollHeight };
  });
  assert.ok(chat.client < 700 && chat.scroll > chat.client * 3, JSON.stringify(chat));
  assert.deepEqual(page.bad, []);
});

test('a message sent while disconnected says so, and shows once after the reconnect', async (t) => {
  let server = await startDemo();
  const port = server.port;
  const browser = await launchBrowser();
  t.after(async () => { await browser.close(); await server.stop(); });
  const page = await openDemo(browser, server.url, 'offline');

  await server.stop();
  await page.waitForFunction(() => document.getElementById('status').textContent.startsWith('disconnected'));
  assert.ok(await inView(page, '#status'));
  await page.fill('#text', 'sent while offline');
  await page.press('#text', 'Enter');
  await page.waitForFunction(() => document.getElementById('chat-note').textContent.startsWith('Not connected'));
  assert.ok(await inView(page, '#chat-note'));

  server = await startDemo(['--http', `127.0.0.1:${port}`, '--tcp', 'off']);
  await page.waitForFunction(() => document.getElementById('status').textContent === 'connected',
    null, { timeout: 30000 });
  await page.waitForFunction(() => document.getElementById('chat').textContent.includes('sent while offline'));
  await page.waitForFunction(() => document.getElementById('chat-note').textContent === '');
  // Once the history fetched on reconnecting has been merged and a later message arrived,
  // nothing more can come for it: it is there once.
  await page.waitForFunction(() => arriving === null);
  await page.fill('#text', 'and later');
  await page.press('#text', 'Enter');
  await page.waitForFunction(() => document.getElementById('chat').textContent.includes('and later'));
  assert.equal(await chatLines(page, 'sent while offline'), 1);
  assert.equal(await chatLines(page, 'and later'), 1);

  // A page that reloads gets the same conversation from the history.
  await page.reload();
  await page.waitForFunction(() => document.getElementById('chat').textContent.includes('and later'));
  assert.equal(await chatLines(page, 'sent while offline'), 1);
});

test('a page of another origin cannot open a WebSocket to the demo', async (t) => {
  const server = await startDemo();
  // Another site: any page, on another port of the same machine.
  const other = http.createServer((req, res) => res.end('<!DOCTYPE html><title>another site</title>'));
  await new Promise((resolve) => other.listen(0, '127.0.0.1', resolve));
  const browser = await launchBrowser();
  t.after(async () => { await browser.close(); await server.stop(); other.close(); });

  const page = await browser.context.newPage();
  await page.goto(`http://127.0.0.1:${other.address().port}/`);
  const outcome = (url) => page.evaluate((u) => new Promise((resolve) => {
    const ws = new WebSocket(u);
    ws.onopen = () => { ws.close(); resolve('open'); };
    ws.onerror = () => resolve('refused');
  }), url);
  assert.equal(await outcome(`ws://127.0.0.1:${server.port}/gotalk/`), 'refused');
  // The demo logs it, naming the origin.
  assert.match(server.log(), new RegExp(`WebSocket refused.*origin="http://127.0.0.1:${other.address().port}"`));
  // The demo's own page still connects.
  const own = await openDemo(browser, server.url);
  assert.deepEqual(own.bad, []);
});
