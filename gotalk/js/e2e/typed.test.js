'use strict';
// Typed services in the browser (examples/typed-web): the page calls the Rust server's Board
// methods and implements the Page methods the server calls, both through the module generated
// from the Rust definitions (#[gotalk::service(typescript)], served as /service.js).
const test = require('node:test');
const assert = require('node:assert/strict');
const { startServer, launchBrowser } = require('./support.js');

test('typed-web: the page self-test passes both ways', async (t) => {
  const server = await startServer('typed-web');
  const browser = await launchBrowser();
  t.after(async () => { await browser.close(); await server.stop(); });
  const page = await browser.newPage(server.url + '?check');
  await page.waitForFunction(() => document.getElementById('result').textContent !== 'not run (open with ?check)',
    null, { timeout: 20000 });
  assert.equal(await page.textContent('#result'), 'ok');
});

test('typed-web: posting asks the page (server -> page request) and shows the note everywhere', async (t) => {
  const server = await startServer('typed-web');
  const browser = await launchBrowser();
  t.after(async () => { await browser.close(); await server.stop(); });
  const alice = await browser.newPage(server.url);
  const bob = await browser.newPage(server.url);
  for (const p of [alice, bob]) {
    await p.waitForFunction(() => document.getElementById('status').textContent === 'connected');
  }

  // The server's confirm request becomes window.confirm in Alice's page: say yes.
  const questions = [];
  alice.on('dialog', (d) => { questions.push(d.message()); d.accept(); });
  await alice.fill('#text', 'first note ✓');
  await alice.click('#post button');
  await bob.waitForFunction(() => document.getElementById('notes').textContent.includes('first note ✓'));
  // Bob can see the broadcast before Alice's post result arrives: wait for her input to clear.
  await alice.waitForFunction(() => document.getElementById('text').value === '');
  assert.deepEqual(questions, ['Post “first note ✓”?']);

  // Say no: the server answers with its typed error, which the page turns into words.
  alice.removeAllListeners('dialog');
  alice.on('dialog', (d) => d.dismiss());
  await alice.fill('#text', 'second note');
  await alice.click('#post button');
  await alice.waitForFunction(() => document.getElementById('error').textContent === 'Not posted.');

  // An empty note never reaches the question.
  await alice.fill('#text', '   ');
  await alice.click('#post button');
  await alice.waitForFunction(() => document.getElementById('error').textContent === 'Write something first.');

  // Search streams its results.
  await bob.fill('#query', 'note');
  await bob.click('#search button');
  await bob.waitForFunction(() => document.querySelectorAll('#found li').length === 1);
  assert.equal(await bob.textContent('#found li'), '#1 first note ✓');
});
