'use strict';
// The websocket-chat example as two processes sharing one chat through a real redis-server
// (started here on a free loopback port, without persistence): a page on process A and a page
// on process B see each other's messages; with Redis killed, pages on the same process still
// chat, and cross-process chat resumes once Redis is back on the same port.
const test = require('node:test');
const assert = require('node:assert/strict');
const net = require('node:net');
const { spawn } = require('node:child_process');
const { startServer, launchBrowser } = require('./support.js');

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** redis-server on `port` (loopback, no persistence); resolves once it accepts connections. */
async function startRedis(port) {
  const bin = process.env.REDIS_SERVER || 'redis-server';
  const proc = spawn(bin, ['--port', String(port), '--bind', '127.0.0.1',
    '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
  let failed = null;
  proc.once('error', (e) => { failed = e; });
  const deadline = Date.now() + 20000;
  for (;;) {
    if (failed) throw new Error(`cannot start ${bin}: ${failed.message} (apt-get install redis-server)`);
    const up = await new Promise((resolve) => {
      const c = net.connect(port, '127.0.0.1', () => { c.end(); resolve(true); });
      c.once('error', () => resolve(false));
    });
    if (up) break;
    if (Date.now() > deadline) { proc.kill('SIGKILL'); throw new Error('redis-server did not start'); }
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    stop() {
      return new Promise((resolve) => {
        if (proc.exitCode !== null || proc.signalCode !== null) return resolve();
        proc.once('exit', () => resolve());
        proc.kill('SIGKILL');
      });
    },
  };
}

const log = (page) => page.evaluate(() => document.getElementById('log').textContent);
const seen = (page, text) => page.waitForFunction(
  (t) => document.getElementById('log').textContent.includes(t), text, { timeout: 15000 });

async function say(page, text) {
  await page.fill('#text', text);
  await page.click('#send');
  await page.waitForFunction(() => document.getElementById('text').value === '');
}

/** `from` says numbered `text`s every 300 ms until `to` shows one (the adapters connect, and
 *  reconnect, in the background); returns the one that arrived. */
async function sayUntilSeen(from, to, text) {
  const deadline = Date.now() + 20000;
  for (let i = 0; Date.now() < deadline; i++) {
    await say(from, `${text} #${i}`);
    try {
      await to.waitForFunction((t) => document.getElementById('log').textContent.includes(t),
        `${text} #`, { timeout: 300 });
      return (await log(to)).match(new RegExp(`${text} #\\d+`))[0];
    } catch (e) { /* not yet */ }
  }
  throw new Error(`"${text}" never reached the other process`);
}

test('websocket-chat: two processes share one chat through Redis, and survive Redis restarting', async (t) => {
  const port = await freePort();
  const url = `redis://127.0.0.1:${port}`;
  let redis = await startRedis(port);
  const args = ['--addr', '127.0.0.1:0', '--redis', url];
  const a = await startServer('websocket-chat', args);
  const b = await startServer('websocket-chat', args);
  const browser = await launchBrowser();
  t.after(async () => {
    await browser.close();
    await a.stop();
    await b.stop();
    await redis.stop();
  });

  const alice = await browser.newPage(a.url + '?name=alice');
  await alice.waitForFunction(() => document.getElementById('me').textContent === 'alice');
  const carol = await browser.newPage(a.url + '?name=carol');
  await carol.waitForFunction(() => document.getElementById('me').textContent === 'carol');
  const bob = await browser.newPage(b.url + '?name=bob');
  await bob.waitForFunction(() => document.getElementById('me').textContent === 'bob');

  // A page on A and a page on B see each other's messages.
  await sayUntilSeen(alice, bob, 'hello from A');
  await say(bob, 'hello from B ✓');
  await seen(alice, 'bobhello from B ✓');
  await seen(carol, 'bobhello from B ✓');
  // The member list is each process's own pages.
  await alice.waitForFunction(() => Array.from(document.querySelectorAll('#members li'),
    (li) => li.textContent).sort().join() === 'alice,carol');

  // Redis goes away: pages on the same process still chat.
  await redis.stop();
  await say(alice, 'while Redis is down');
  await seen(carol, 'alicewhile Redis is down');
  await say(bob, 'B on its own');
  await seen(bob, 'bobB on its own');

  // Redis is back on the same port: the processes reconnect and chat across again.
  redis = await startRedis(port);
  await sayUntilSeen(alice, bob, 'after the restart');
  await sayUntilSeen(bob, carol, 'and back');
  // At most once: what was said while Redis was down never reaches the other process.
  assert.doesNotMatch(await log(bob), /while Redis is down/);
  assert.doesNotMatch(await log(alice), /B on its own/);
  // A page that joins B now gets B's history, with what was said on A.
  const dave = await browser.newPage(b.url + '?name=dave');
  await seen(dave, 'alicehello from A');
  await seen(dave, 'after the restart');
});
