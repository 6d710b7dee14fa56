'use strict';
// Test doubles: a fake WebSocket object and a tiny scripted gotalk peer on its far end.
const gotalk = require('../gotalk.js');
const { protocol } = gotalk;

const te = new TextEncoder();
const td = new TextDecoder();

/** In-memory stand-in for the browser WebSocket object. The test drives the "server" side. */
class FakeWebSocket {
  constructor(url) {
    this.url = url;
    this.readyState = 0;
    this.binaryType = 'blob';
    this.sent = [];          // frames the library sent: {kind:'text'|'binary', data}
    this.closeCode = null;
    this.onopen = this.onmessage = this.onclose = this.onerror = null;
    this.listeners = [];
    FakeWebSocket.instances.push(this);
    for (const fn of FakeWebSocket.onCreate) fn(this);
  }
  send(data) {
    if (this.readyState !== 1) throw new Error('InvalidStateError: not open');
    if (typeof data === 'string') this.sent.push({ kind: 'text', data });
    else this.sent.push({ kind: 'binary', data: Uint8Array.from(data) });
    for (const fn of this.listeners) fn(this.sent[this.sent.length - 1]);
  }
  close(code) {
    if (this.readyState >= 2) return;
    this.readyState = 2;
    this.closeCode = code === undefined ? 1005 : code;
    queueMicrotask(() => this._closed(this.closeCode));
  }
  // ---- server-side controls ----
  accept() { this.readyState = 1; this.onopen && this.onopen({ type: 'open' }); }
  refuse() { this.readyState = 3; this.onerror && this.onerror({}); this.onclose && this.onclose({ code: 1006 }); }
  /** Deliver a frame: string -> text frame, else binary (as an ArrayBuffer, binaryType=arraybuffer) */
  receive(data) {
    if (typeof data !== 'string') {
      const b = data instanceof Uint8Array ? data : te.encode(String(data));
      data = b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength);
    }
    this.onmessage && this.onmessage({ data });
  }
  receiveBinary(s) { this.receive(typeof s === 'string' ? te.encode(s) : s); }
  serverClose(code = 1000) { if (this.readyState < 3) this._closed(code); }
  _closed(code) {
    if (this.readyState === 3) return;
    this.readyState = 3;
    this.onclose && this.onclose({ code });
  }
  sentStrings() { return this.sent.map((f) => f.kind === 'text' ? f.data : td.decode(f.data)); }
}
FakeWebSocket.instances = [];
FakeWebSocket.onCreate = [];
FakeWebSocket.reset = () => { FakeWebSocket.instances = []; FakeWebSocket.onCreate = []; };
FakeWebSocket.CONNECTING = 0;
FakeWebSocket.OPEN = 1;
FakeWebSocket.CLOSING = 2;
FakeWebSocket.CLOSED = 3;

/**
 * Scripted peer on the server side of a FakeWebSocket: decodes everything the library sends
 * (as one byte stream) and can send messages back.
 */
class Peer {
  constructor(ws, { sendVersion = true } = {}) {
    this.ws = ws;
    this.decoder = new protocol.Decoder({ readVersion: true });
    this.messages = [];
    this.waiters = [];
    ws.listeners.push((f) => {
      const bytes = f.kind === 'text' ? te.encode(f.data) : f.data;
      for (const m of this.decoder.push(bytes)) {
        m.type = String.fromCharCode(m.t);
        m.text = m.payload ? td.decode(m.payload) : undefined;
        this.messages.push(m);
        this.waiters.splice(0).forEach((w) => w());
      }
    });
    if (ws.readyState === 0) ws.accept();
    if (sendVersion) ws.receiveBinary('01');
  }
  /** Messages of `type` received so far (heartbeats excluded unless asked for) */
  of(type) { return this.messages.filter((m) => m.type === type); }
  /** Wait for the next non-heartbeat message */
  async next(type) {
    for (;;) {
      const i = this.messages.findIndex((m) => m.type !== 'h' && (!type || m.type === type));
      if (i !== -1) return this.messages.splice(i, 1)[0];
      await new Promise((r) => this.waiters.push(r));
    }
  }
  /** Send message `m` with `payload` as two frames: header, then payload (if non-empty) */
  send(m, payload) {
    const bytes = payload == null ? new Uint8Array(0) : typeof payload === 'string' ? te.encode(payload) : payload;
    const h = protocol.encodeHeader(Object.assign({ size: bytes.length }, m));
    this.ws.receive(h);
    if (bytes.length) this.ws.receive(bytes);
  }
}

/** Open a Sock on a FakeWebSocket, accept it and attach a Peer. */
function connect(options = {}, handlers) {
  FakeWebSocket.reset();
  const s = gotalk.Sock(handlers || gotalk.Handlers(), Object.assign({ WebSocket: FakeWebSocket, heartbeatInterval: 0 }, options));
  s.open('ws://test/gotalk/');
  const ws = FakeWebSocket.instances[0];
  const peer = new Peer(ws);
  return { s, ws, peer };
}

const tick = () => new Promise((r) => setImmediate(r));

module.exports = { FakeWebSocket, Peer, connect, tick, te, td, gotalk };
