'use strict';
// A raw WebSocket server for attacking gotalk.js from the server side over a real socket.
// It speaks just enough RFC 6455 to accept an upgrade and exchange frames, and hands each
// connection to the test as a scripted gotalk peer: it decodes what the client sends with the
// protocol codec and writes whatever bytes the test wants, honest or hostile, with back-pressure
// (a write waits for 'drain'), so the server itself holds almost nothing.
const http = require('node:http');
const crypto = require('node:crypto');
const { protocol } = require('../gotalk.js');

const WS_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
const te = new TextEncoder();
const td = new TextDecoder();

const OP_TEXT = 1, OP_BINARY = 2, OP_CLOSE = 8, OP_PING = 9, OP_PONG = 10;

function frameHeader(opcode, len) {
  let h;
  if (len < 126) {
    h = Buffer.alloc(2);
    h[1] = len;
  } else if (len < 65536) {
    h = Buffer.alloc(4);
    h[1] = 126;
    h.writeUInt16BE(len, 2);
  } else {
    h = Buffer.alloc(10);
    h[1] = 127;
    h.writeBigUInt64BE(BigInt(len), 2);
  }
  h[0] = 0x80 | opcode;
  return h;
}

/** One upgraded connection, seen from the server. */
class RawConn {
  constructor(socket) {
    this.socket = socket;
    this.decoder = new protocol.Decoder({ readVersion: true });
    this.messages = [];      // gotalk messages the client sent, heartbeats included, not yet taken
    this.log = [];           // every message the client sent
    this.closeCode = null;   // status of the client's close frame
    this.protocolError = null;
    this._in = Buffer.alloc(0);
    this._waiters = [];
    this.closed = new Promise((resolve) => socket.once('close', resolve));
    socket.once('close', () => this._wake());
    socket.setNoDelay(true);
    socket.on('data', (d) => this._onData(d));
    socket.on('error', () => {});
  }

  _onData(d) {
    this._in = this._in.length ? Buffer.concat([this._in, d]) : d;
    for (;;) {
      const b = this._in;
      if (b.length < 2) return;
      const opcode = b[0] & 0x0f, masked = (b[1] & 0x80) !== 0;
      let len = b[1] & 0x7f, o = 2;
      if (len === 126) { if (b.length < 4) return; len = b.readUInt16BE(2); o = 4; }
      else if (len === 127) { if (b.length < 10) return; len = Number(b.readBigUInt64BE(2)); o = 10; }
      const mask = masked ? b.subarray(o, o + 4) : null;
      if (masked) o += 4;
      if (b.length < o + len) return;
      const payload = Buffer.from(b.subarray(o, o + len));
      if (mask) for (let i = 0; i < payload.length; i++) payload[i] ^= mask[i & 3];
      this._in = b.subarray(o + len);
      this._onFrame(opcode, payload);
    }
  }

  _onFrame(opcode, payload) {
    if (opcode === OP_CLOSE) {
      this.closeCode = payload.length >= 2 ? payload.readUInt16BE(0) : 1005;
      this.socket.end(Buffer.concat([frameHeader(OP_CLOSE, payload.length), payload]));
      this._wake();
      return;
    }
    if (opcode === OP_PING) { this.socket.write(Buffer.concat([frameHeader(OP_PONG, payload.length), payload])); return; }
    if (opcode === OP_PONG) return;
    try {
      for (const m of this.decoder.push(payload)) {
        m.type = String.fromCharCode(m.t);
        m.text = m.payload ? td.decode(m.payload) : undefined;
        this.messages.push(m);
        this.log.push(m);
      }
    } catch (err) {
      this.protocolError = err;
    }
    this._wake();
  }

  _wake() { this._waiters.splice(0).forEach((w) => w()); }

  /** The next message of `type` (any type but heartbeats when omitted), taken off the list. */
  async next(type) {
    for (;;) {
      const i = this.messages.findIndex((m) => m.type !== 'h' && (!type || m.type === type));
      if (i !== -1) return this.messages.splice(i, 1)[0];
      if (this.socket.destroyed || this.closeCode !== null) throw new Error('client closed before sending ' + (type || 'a message'));
      await new Promise((r) => this._waiters.push(r));
    }
  }

  /** Resolves once `pred()` holds, checked after each message; false if the client left first. */
  async waitFor(pred) {
    while (!pred()) {
      if (this.socket.destroyed || this.closeCode !== null) return false;
      await new Promise((r) => this._waiters.push(r));
    }
    return true;
  }

  /** Messages of `type` received so far (without taking them). */
  of(type) { return this.messages.filter((m) => m.type === type); }

  /** Resolves once the client's close frame (or the TCP close) has arrived. */
  async waitClose() {
    while (this.closeCode === null && !this.socket.destroyed) {
      await new Promise((r) => this._waiters.push(r));
    }
    return this.closeCode;
  }

  /**
   * Write one WebSocket frame (binary unless `text`); resolves when the socket can take more,
   * or false once the connection is gone.
   */
  frame(bytes, text = false) {
    if (this.socket.destroyed) return Promise.resolve(false);
    if (typeof bytes === 'string') bytes = te.encode(bytes);
    const h = frameHeader(text ? OP_TEXT : OP_BINARY, bytes.length);
    this.socket.write(h);
    if (this.socket.write(bytes)) return Promise.resolve(true);
    return new Promise((resolve) => {
      const done = () => { this.socket.off('drain', done); this.socket.off('close', done); resolve(!this.socket.destroyed); };
      this.socket.once('drain', done);
      this.socket.once('close', done);
    });
  }

  /** Send gotalk message `m` as two frames, the header then the payload (when non-empty). */
  async send(m, payload) {
    const bytes = payload == null ? new Uint8Array(0) : typeof payload === 'string' ? te.encode(payload) : payload;
    const ok = await this.frame(protocol.encodeHeader(Object.assign({ size: bytes.length }, m)));
    return bytes.length && ok ? this.frame(bytes) : ok;
  }

  /** Close with a WebSocket close frame, then the TCP connection. */
  close(code = 1000) {
    if (this.socket.destroyed) return;
    const p = Buffer.alloc(2);
    p.writeUInt16BE(code, 0);
    this.socket.end(Buffer.concat([frameHeader(OP_CLOSE, 2), p]));
  }

  /** Cut the TCP connection without a close frame. */
  destroy() { this.socket.destroy(); }
}

/**
 * Starts a server on 127.0.0.1 (a free port). Every upgrade becomes a RawConn that has sent the
 * protocol version "01" and is passed to `onConn(conn, request)`. `files` maps URL paths to
 * {type, body} served over plain HTTP (for a browser to load a page and gotalk.js).
 */
async function startRawServer({ onConn, files = {} } = {}) {
  const conns = new Set();
  const seen = [];
  const server = http.createServer((req, res) => {
    const f = files[req.url.split('?')[0]];
    if (!f) { res.writeHead(404); res.end(); return; }
    res.writeHead(200, { 'content-type': f.type, 'cache-control': 'no-store' });
    res.end(f.body);
  });
  server.on('upgrade', (req, socket) => {
    const key = req.headers['sec-websocket-key'];
    if (!key) { socket.destroy(); return; }
    const accept = crypto.createHash('sha1').update(key + WS_GUID).digest('base64');
    socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
                 'Sec-WebSocket-Accept: ' + accept + '\r\n\r\n');
    const conn = new RawConn(socket);
    conns.add(conn);
    seen.push(conn);
    socket.once('close', () => conns.delete(conn));
    conn.frame('01');
    if (onConn) Promise.resolve(onConn(conn, req)).catch((err) => { console.error('raw server:', err); conn.destroy(); });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  return {
    port,
    url: `http://127.0.0.1:${port}/`,
    wsUrl: `ws://127.0.0.1:${port}/gotalk/`,
    conns,
    /** Every connection accepted, closed ones included, in order. */
    seen,
    close() {
      for (const c of conns) c.destroy();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

module.exports = { startRawServer, RawConn };
