'use strict';
// A gotalk.js client in its own Node.js process, driven by a test over stdin/stdout (one JSON
// command per line, one JSON answer per line), so that the process's memory is the client's
// alone. Started by `spawnClient()` below with --expose-gc and, on Node < 22, the flag that
// enables the built-in WebSocket.
const { spawn } = require('node:child_process');
const path = require('node:path');
const readline = require('node:readline');

function errorInfo(err) {
  const o = { message: String(err && err.message || err) };
  for (const k of ['code', 'limit', 'isRetry', 'isGotalkProtocolError', 'retryAfter', 'closeCode']) {
    if (err && err[k] !== undefined) o[k] = err[k];
  }
  return o;
}

function runDriver() {
  const gotalk = require('../gotalk.js');
  const socks = new Map();
  const streams = new Map();
  let nextHandle = 0;

  const handlers = gotalk.Handlers();
  handlers.handleBufferRequest('echo', (buf, result) => result(buf));
  // An answer far larger than its request, for a peer that does not read.
  handlers.handleBufferRequest('big', (buf, result) => result(new Uint8Array(Number(String(buf)))));
  handlers.handleBufferRequest('hang', () => new Promise(() => {}));
  handlers.handleStreamRequest('hoard', () => {});   // never reads its input

  const mem = () => {
    global.gc();
    global.gc();
    const m = process.memoryUsage();
    return { heapUsed: m.heapUsed, external: m.external, arrayBuffers: m.arrayBuffers, rss: m.rss, held: m.heapUsed + m.external };
  };

  const commands = {
    async open({ name, url, options }) {
      const s = gotalk.Sock(handlers, Object.assign({ WebSocket: globalThis.WebSocket }, options));
      socks.set(name, s);
      s.on('close', (err) => { s.lastClose = err ? errorInfo(err) : null; });
      s.notes = [];
      s.on('notification', (n) => { s.notes.push(n.name); (s.noteWaiters || []).splice(0).forEach((w) => w()); });
      await new Promise((resolve, reject) => s.open(url, (err) => (err ? reject(err) : resolve())));
      return null;
    },
    async request({ sock, op, value, raw }) {
      const s = socks.get(sock), t0 = Date.now();
      const v = raw ? String(await s.bufferRequest(op, value)) : await s.request(op, value);
      return { value: raw ? v.slice(0, 64) : v, ms: Date.now() - t0 };
    },
    // Fire `n` requests at once; report how many were refused before anything was sent.
    async flood({ sock, op, n }) {
      const s = socks.get(sock), refused = [];
      for (let i = 0; i < n; i++) {
        s.bufferRequest(op, null).catch((err) => refused.push(errorInfo(err)));
      }
      await new Promise((r) => setImmediate(r));
      return { refused: refused.length, first: refused[0] || null };
    },
    async stream({ sock, op, consume }) {
      const s = socks.get(sock), req = s.streamRequest(op), h = ++nextHandle;
      const st = { bytes: 0, parts: 0, t0: Date.now() };
      if (consume === 'listen') {
        st.done = new Promise((resolve) => req.on('end', (err) => { st.ms = Date.now() - st.t0; resolve(err); }));
        req.on('data', (b) => { st.bytes += b.length; st.parts++; });
      } else {
        // Nothing takes the parts until streamEnd iterates them.
        st.done = null;
        st.req = req;
      }
      req.end();
      streams.set(h, st);
      return { handle: h };
    },
    async streamEnd({ handle }) {
      const st = streams.get(handle);
      if (!st.done) {
        st.done = (async () => {
          try {
            for await (const b of st.req) { st.bytes += b.length; st.parts++; }
          } catch (err) {
            return err;
          } finally {
            st.ms = Date.now() - st.t0;
          }
          return null;
        })();
      }
      const err = await st.done;
      return { error: err ? errorInfo(err) : null, bytes: st.bytes, parts: st.parts, ms: st.ms };
    },
    async lastClose({ sock }) { return socks.get(sock).lastClose; },
    // Resolves once notification `name` has arrived: everything the server sent before it has
    // been handled by then.
    async waitNote({ sock, name }) {
      const s = socks.get(sock);
      while (!s.notes.includes(name)) await new Promise((r) => (s.noteWaiters = s.noteWaiters || []).push(r));
      return null;
    },
    // Resolves once `bytes` of a partly received payload are in (for a peer that stops midway).
    async waitPartial({ sock, bytes }) {
      const s = socks.get(sock);
      while (!(s._decoder && s._decoder._msg && s._decoder._filled >= bytes)) await new Promise((r) => setTimeout(r, 5));
      return { filled: s._decoder._filled, declared: s._decoder._msg.size };
    },
    async mem() { return mem(); },
    async end({ sock }) { socks.get(sock).end(); socks.get(sock).end(); return null; },
  };

  const out = (o) => process.stdout.write(JSON.stringify(o) + '\n');
  readline.createInterface({ input: process.stdin }).on('line', (line) => {
    const c = JSON.parse(line);
    Promise.resolve().then(() => commands[c.cmd](c)).then(
      (ok) => out({ id: c.id, ok }), (err) => out({ id: c.id, err: errorInfo(err) }));
  });
  process.stdin.on('end', () => process.exit(0));
}

/**
 * Starts a driver process. Returns {call(cmd, args) -> Promise, kill()}; call() rejects with
 * an Error carrying the client's error fields when the command failed.
 */
function spawnClient() {
  const args = ['--expose-gc'];
  if (typeof globalThis.WebSocket !== 'function') args.push('--experimental-websocket', '--no-warnings');
  const proc = spawn(process.execPath, [...args, __filename], { stdio: ['pipe', 'pipe', 'inherit'] });
  const waiting = new Map();
  let nextId = 0;
  readline.createInterface({ input: proc.stdout }).on('line', (line) => {
    const r = JSON.parse(line), w = waiting.get(r.id);
    waiting.delete(r.id);
    if (r.err) w.reject(Object.assign(new Error(r.err.message), r.err));
    else w.resolve(r.ok);
  });
  proc.on('exit', (code) => {
    for (const w of waiting.values()) w.reject(new Error('client process exited with ' + code));
    waiting.clear();
  });
  return {
    call(cmd, args = {}) {
      const id = ++nextId;
      if (proc.exitCode !== null || proc.signalCode !== null) {
        return Promise.reject(new Error('client process has exited'));
      }
      return new Promise((resolve, reject) => {
        waiting.set(id, { resolve, reject });
        proc.stdin.write(JSON.stringify(Object.assign({ id, cmd }, args)) + '\n');
      });
    },
    kill() {
      return new Promise((resolve) => {
        if (proc.exitCode !== null || proc.signalCode !== null) return resolve();
        proc.once('exit', () => resolve());
        proc.kill('SIGKILL');
      });
    },
  };
}

if (require.main === module) runDriver();

module.exports = { spawnClient, driverPath: path.join(__dirname, 'client-driver.js') };
