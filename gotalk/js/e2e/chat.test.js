'use strict';
// The websocket-chat example with two pages: both join under their names, a message typed in
// one appears in the other (server -> page notifications), and "Who is typing?" makes the
// server ask every page for its typing status (server -> page requests).
const test = require('node:test');
const assert = require('node:assert/strict');
const { startServer, launchBrowser } = require('./support.js');

const text = (page, sel) => page.evaluate((s) => document.querySelector(s).textContent, sel);
const items = (page, sel) => page.evaluate(
  (s) => Array.from(document.querySelectorAll(s + ' li'), (li) => li.textContent), sel);

test('websocket-chat: two pages talk through the Rust server', async (t) => {
  const server = await startServer('websocket-chat');
  const browser = await launchBrowser();
  t.after(async () => { await browser.close(); await server.stop(); });

  const alice = await browser.newPage(server.url + '?name=alice');
  await alice.waitForFunction(() => document.getElementById('me').textContent === 'alice');
  const bob = await browser.newPage(server.url + '?name=bob');
  await bob.waitForFunction(() => document.getElementById('me').textContent === 'bob');

  const both = (s) => Array.from(document.querySelectorAll(s + ' li'), (li) => li.textContent)
    .sort().join() === 'alice,bob';
  await alice.waitForFunction(both, '#members');
  await bob.waitForFunction(both, '#members');

  await alice.fill('#text', 'hello bob ✓');
  await alice.click('#send');
  await bob.waitForFunction(() => document.getElementById('log').textContent.includes('hello bob ✓'));
  assert.match(await text(bob, '#log'), /bob joined/);
  assert.match(await text(bob, '#log'), /alicehello bob ✓/);
  // The sender sees its own message too, and its input was cleared.
  await alice.waitForFunction(() => document.getElementById('log').textContent.includes('hello bob ✓'));
  assert.equal(await alice.inputValue('#text'), '');

  // Alice is typing; Bob asks who is typing: the server asks both pages.
  await alice.fill('#text', 'half a sentence');
  await bob.click('#who');
  await bob.waitForFunction(() => document.querySelectorAll('#typing li').length === 2);
  assert.deepEqual((await items(bob, '#typing')).sort(), ['alice is typing…', 'bob is idle']);

  // A third page that joins later gets the history.
  const carol = await browser.newPage(server.url + '?name=carol');
  await carol.waitForFunction(() => document.getElementById('log').textContent.includes('hello bob ✓'));

  // Alice leaves: the others are told.
  await alice.close();
  await bob.waitForFunction(() => document.getElementById('log').textContent.includes('alice left'));
  await bob.waitForFunction(() => Array.from(document.querySelectorAll('#members li'),
    (li) => li.textContent).sort().join() === 'bob,carol');
});
