/*!
 * gotalk.js — gotalk protocol v1 over WebSocket, for web browsers and Node.js.
 * Part of gotalk-rs. API-compatible with the reference gotalk.js 1.2.1. Zero dependencies.
 *
 * Browser: <script src="/gotalk/gotalk.js"></script> exposes `window.gotalk`.
 * Node.js: const gotalk = require('./gotalk.js'); gotalk.open(addr, {WebSocket: require('ws')})
 */
(function (root, factory) {
  'use strict';
  var gotalk = factory(root);
  if (typeof module === 'object' && module && module.exports) {
    module.exports = gotalk;
  } else {
    root.gotalk = gotalk;
  }
})(typeof globalThis !== 'undefined' ? globalThis : typeof self !== 'undefined' ? self : this,
function (root) {
'use strict';

var gotalk = {};

// ============================================================================================
// Bytes and text

var utf8Encoder = new TextEncoder();
var utf8Decoder = new TextDecoder('utf-8');

/**
 * A Uint8Array whose `toString()` decodes the bytes as UTF-8 text. Every payload this library
 * hands you is a Buf (like the reference library's Buf).
 */
class Buf extends Uint8Array {
  toString() { return utf8Decoder.decode(this); }
  /** Encode a string as UTF-8. */
  static fromString(s) { var b = utf8Encoder.encode(s); return new Buf(b.buffer, b.byteOffset, b.length); }
  /** True when `v` is a Uint8Array (a Buf or any other). */
  static isBuf(v) { return v instanceof Uint8Array; }
}

var EMPTY = new Buf(0);

// Anything byte-like (or a string, as UTF-8) as a Uint8Array, without copying where possible.
function toBytes(v) {
  if (v instanceof Uint8Array) return v;
  if (typeof v === 'string') return utf8Encoder.encode(v);
  if (v instanceof ArrayBuffer) return new Uint8Array(v);
  if (ArrayBuffer.isView(v)) return new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
  throw new TypeError('expected a string, Uint8Array, ArrayBuffer or ArrayBufferView');
}

// Number of bytes `s` takes as UTF-8 (lone surrogates count as U+FFFD, as WebSocket.send does).
function utf8Length(s) {
  var n = 0;
  for (var i = 0; i < s.length; i++) {
    var c = s.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length &&
             (s.charCodeAt(i + 1) & 0xfc00) === 0xdc00) { n += 4; i++; }
    else n += 3;
  }
  return n;
}

function concatBytes(parts) {
  var len = 0, i, o = 0;
  for (i = 0; i < parts.length; i++) len += parts[i].length;
  var out = new Buf(len);
  for (i = 0; i < parts.length; i++) { out.set(parts[i], o); o += parts[i].length; }
  return out;
}

function errorText(err) {
  return err instanceof Error ? err.message : String(err);
}

function isThenable(v) {
  return v !== null && (typeof v === 'object' || typeof v === 'function') &&
         typeof v.then === 'function';
}

// ============================================================================================
// EventEmitter

/**
 * Minimal event emitter: on/once/addListener/removeListener/off/removeListeners/
 * removeAllListeners/emit/listenerCount. `EventEmitter.mixin(obj)` adds the methods to `obj`.
 */
function EventEmitter() {}
EventEmitter.prototype.on = function (e, fn) {
  var m = this._events || (this._events = Object.create(null));
  (m[e] || (m[e] = [])).push(fn);
  if (this._listenerAdded) this._listenerAdded(e);
  return this;
};
EventEmitter.prototype.addListener = EventEmitter.prototype.on;
EventEmitter.prototype.once = function (e, fn) {
  var self = this;
  function wrapper() { self.removeListener(e, wrapper); return fn.apply(this, arguments); }
  wrapper.listener = fn;
  return this.on(e, wrapper);
};
EventEmitter.prototype.removeListener = function (e, fn) {
  var l = this._events && this._events[e];
  if (l) {
    for (var i = 0; i < l.length; i++) {
      if (l[i] === fn || l[i].listener === fn) { l.splice(i, 1); break; }
    }
  }
  return this;
};
EventEmitter.prototype.off = EventEmitter.prototype.removeListener;
EventEmitter.prototype.removeListeners = function (e) {
  if (this._events) delete this._events[e];
  return this;
};
EventEmitter.prototype.removeAllListeners = function (e) {
  if (e === undefined) this._events = null; else this.removeListeners(e);
  return this;
};
EventEmitter.prototype.listenerCount = function (e) {
  var l = this._events && this._events[e];
  return l ? l.length : 0;
};
EventEmitter.prototype.emit = function (e) {
  var l = this._events && this._events[e];
  if (!l || l.length === 0) return false;
  var args = Array.prototype.slice.call(arguments, 1);
  l = l.slice();
  for (var i = 0; i < l.length; i++) l[i].apply(this, args);
  return true;
};
EventEmitter.mixin = function (obj) {
  Object.keys(EventEmitter.prototype).forEach(function (k) { obj[k] = EventEmitter.prototype[k]; });
  return obj;
};

// ============================================================================================
// Protocol codec

var T_SINGLE_REQ = 0x72, T_STREAM_REQ = 0x73, T_STREAM_REQ_PART = 0x70, T_SINGLE_RES = 0x52,
    T_STREAM_RES = 0x53, T_ERROR_RES = 0x45, T_RETRY_RES = 0x65, T_NOTIFICATION = 0x6e,
    T_HEARTBEAT = 0x68, T_PROTOCOL_ERROR = 0x66;

var ERR_ABNORMAL = 0, ERR_UNSUPPORTED = 1, ERR_INVALID_MSG = 2, ERR_TIMEOUT = 3;

// Header layout per message type, after the type byte:
//   i = request id (4 bytes), n = text3 name, w = wait (hex8), z = payload size (hex8),
//   l = load (hex4), t = unix time (hex8), c = protocol error code (hex8)
var LAYOUT = {};
LAYOUT[T_SINGLE_REQ] = 'inz';
LAYOUT[T_STREAM_REQ] = 'inz';
LAYOUT[T_STREAM_REQ_PART] = 'iz';
LAYOUT[T_SINGLE_RES] = 'iz';
LAYOUT[T_STREAM_RES] = 'iz';
LAYOUT[T_ERROR_RES] = 'iz';
LAYOUT[T_RETRY_RES] = 'iwz';
LAYOUT[T_NOTIFICATION] = 'nz';
LAYOUT[T_HEARTBEAT] = 'lt';
LAYOUT[T_PROTOCOL_ERROR] = 'c';

var FIELD_WIDTH = {i: 4, n: 3, w: 8, z: 8, l: 4, t: 8, c: 8};
var FIELD_KEY = {w: 'wait', z: 'size', l: 'load', t: 'time', c: 'code'};
var MAX_NAME_LEN = 0xfff;
var MAX_HEADER_LEN = 1 + 4 + 3 + MAX_NAME_LEN + 8;
var HEX = '0123456789abcdef';

var protocolErrorText = ['abnormal condition', 'unsupported protocol', 'invalid protocol message',
                         'timeout'];

/**
 * Make an Error for a gotalk protocol error code (`isGotalkProtocolError = true`, `code`).
 * @param {number} code
 * @param {string} [detail]
 */
function protocolError(code, detail) {
  var err = new Error((protocolErrorText[code] || 'protocol error ' + code) +
                      (detail ? ': ' + detail : ''));
  err.isGotalkProtocolError = true;
  err.code = code;
  return err;
}

function putHex(b, o, n, digits) {
  if (typeof n !== 'number' || !(n >= 0) || n !== Math.floor(n) || n >= Math.pow(16, digits)) {
    throw new RangeError('value ' + n + ' does not fit in ' + digits + ' hex digits');
  }
  for (var i = digits - 1; i >= 0; i--) { b[o + i] = HEX.charCodeAt(n % 16); n = Math.floor(n / 16); }
}

// Parse `digits` hex digits at b[o]; -1 when any is not a hex digit.
function readHex(b, o, digits) {
  var v = 0;
  for (var i = 0; i < digits; i++) {
    var c = b[o + i], d;
    if (c >= 0x30 && c <= 0x39) d = c - 0x30;
    else if (c >= 0x61 && c <= 0x66) d = c - 0x57;
    else if (c >= 0x41 && c <= 0x46) d = c - 0x37;
    else return -1;
    v = v * 16 + d;
  }
  return v;
}

function msgTypeByte(t) {
  return typeof t === 'string' ? t.charCodeAt(0) : t;
}

/**
 * Encode a message header (without its payload).
 * @param {{t:number|string, id?:string|Uint8Array, name?:string, wait?:number, size?:number,
 *          load?:number, time?:number, code?:number}} m
 * @returns {Buf}
 */
function encodeHeader(m) {
  var t = msgTypeByte(m.t), layout = LAYOUT[t];
  if (!layout) throw new TypeError('unknown message type ' + JSON.stringify(m.t));
  var name = null, len = 1, i, f;
  for (i = 0; i < layout.length; i++) {
    f = layout[i];
    if (f === 'n') {
      name = utf8Encoder.encode(m.name || '');
      if (name.length > MAX_NAME_LEN) throw new RangeError('name longer than 4095 bytes');
      len += name.length;
    }
    len += FIELD_WIDTH[f];
  }
  var b = new Buf(len), o = 1;
  b[0] = t;
  for (i = 0; i < layout.length; i++) {
    f = layout[i];
    if (f === 'i') {
      var id = m.id;
      if (id == null || id.length !== 4) throw new TypeError('request id must be 4 bytes');
      for (var j = 0; j < 4; j++) {
        var c = typeof id === 'string' ? id.charCodeAt(j) : id[j];
        if (c > 0xff) throw new TypeError('request id must be 4 bytes');
        b[o + j] = c;
      }
    } else if (f === 'n') {
      putHex(b, o, name.length, 3);
      b.set(name, o + 3);
      o += name.length;
    } else if (f === 't' && m.time == null) {
      putHex(b, o, Math.floor(Date.now() / 1000), 8);
    } else {
      putHex(b, o, m[FIELD_KEY[f]] || 0, FIELD_WIDTH[f]);
    }
    o += FIELD_WIDTH[f];
  }
  return b;
}

/**
 * Encode a whole message: header followed by payload (string payloads as UTF-8).
 * `m.size` is set from the payload.
 * @returns {Buf}
 */
function encodeMsg(m, payload) {
  var p = payload == null ? EMPTY : toBytes(payload);
  var h = Object.assign({}, m);
  if (LAYOUT[msgTypeByte(m.t)] && LAYOUT[msgTypeByte(m.t)].indexOf('z') !== -1) h.size = p.length;
  return concatBytes([encodeHeader(h), p]);
}

/**
 * Parse one header at b[off..end). Returns {msg, len}, or null when more bytes are needed.
 * Throws a protocol error (code 2) for bytes that can not be a header.
 */
function parseHeader(b, off, end) {
  if (off >= end) return null;
  var t = b[off], layout = LAYOUT[t];
  if (!layout) throw protocolError(ERR_INVALID_MSG, 'unknown message type 0x' + t.toString(16));
  var m = {t: t, id: null, name: null, wait: 0, size: 0, load: 0, time: 0, code: 0};
  var o = off + 1;
  for (var i = 0; i < layout.length; i++) {
    var f = layout[i], w = FIELD_WIDTH[f];
    if (o + w > end) return null;
    if (f === 'i') {
      m.id = String.fromCharCode(b[o], b[o + 1], b[o + 2], b[o + 3]);
    } else {
      var v = readHex(b, o, w);
      if (v < 0) throw protocolError(ERR_INVALID_MSG, 'bad hex digits in header');
      if (f === 'n') {
        if (o + w + v > end) return null;
        m.name = utf8Decoder.decode(b.subarray(o + w, o + w + v));
        o += v;
      } else {
        m[FIELD_KEY[f]] = v;
      }
    }
    o += w;
  }
  return {msg: m, len: o - off};
}

// What memory is allowed to cost, and the defaults. Every size the peer declares is checked
// against a limit before anything is kept, and buffers grow only as bytes actually arrive.
var MiB = 1024 * 1024;
var DEFAULT_MAX_PAYLOAD = 16 * MiB;
// Two max-size parts: a consumer that is one part behind is not cut off.
var DEFAULT_STREAM_BUFFER = 32 * MiB;
// A kept part costs more than its bytes (a typed array and its backing store, about 200 bytes
// measured in V8); charging it stops a flood of tiny parts from hiding behind a byte count.
var PART_OVERHEAD = 256;
// Smallest allocation for a payload that arrives in pieces (then doubled as it fills).
var MIN_GROWTH = 64 * 1024;

// `buf` (holding `keep` bytes) with room for `need` bytes, never more than `max`.
function grown(buf, keep, need, max) {
  var cap = buf ? buf.length : 0;
  if (need <= cap) return buf;
  var b = new Buf(Math.min(max, Math.max(need, cap * 2, MIN_GROWTH)));
  if (buf && keep) b.set(buf.subarray(0, keep));
  return b;
}

/**
 * Incremental decoder: feed it bytes in chunks of any size with `push(chunk)`; it returns the
 * complete messages so far, each {t, id, name, wait, size, load, time, code, payload}.
 * Options: `readVersion` (first read the 2-digit protocol version, which must equal
 * `expectVersion`, default 1), `maxPayloadSize` (default 16 MiB) and `skipOversized`: a header
 * announcing more than `maxPayloadSize` is a protocol error (code 2), or with `skipOversized`
 * a message `{..., size, payload: null, oversized: true}` delivered at once, whose payload is
 * then skipped as it arrives. Nothing is allocated from a declared size: a payload split over
 * chunks is kept in a buffer that grows with the bytes received.
 * A protocol error is thrown with `err.messages` holding messages decoded before it.
 * @param {{readVersion?:boolean, expectVersion?:number, maxPayloadSize?:number,
 *          skipOversized?:boolean}} [opts]
 */
function Decoder(opts) {
  if (!(this instanceof Decoder)) return new Decoder(opts);
  opts = opts || {};
  this.readVersion = !!opts.readVersion;
  this.expectVersion = opts.expectVersion == null ? 1 : opts.expectVersion;
  this.maxPayloadSize = opts.maxPayloadSize == null ? DEFAULT_MAX_PAYLOAD : opts.maxPayloadSize;
  this.skipOversized = !!opts.skipOversized;
  /** The peer's protocol version once read (readVersion mode), else null */
  this.version = null;
  this._head = EMPTY;   // bytes of an incomplete header
  this._msg = null;     // message waiting for its payload
  this._body = null;    // its payload so far
  this._filled = 0;
  this._skip = 0;       // bytes of an oversized payload still to discard
}

Decoder.prototype.push = function (chunk) {
  var out = [];
  try {
    this.feed(chunk, function (m) { out.push(m); });
  } catch (err) {
    err.messages = out;
    throw err;
  }
  return out;
};

/**
 * Like push(), but hands each message to `onMessage(msg)` as soon as it is decoded instead of
 * collecting them (so one large chunk of small messages is never held as objects all at once).
 * When `onMessage` returns false, the rest of the chunk is dropped.
 */
Decoder.prototype.feed = function (chunk, onMessage) {
  chunk = toBytes(chunk);
  var i = 0, n = chunk.length, m, take;
  for (;;) {
    if (this._skip > 0) {
      take = Math.min(this._skip, n - i);
      this._skip -= take;
      i += take;
      if (this._skip > 0) return;
    }
    m = this._msg;
    if (m) {
      take = Math.min(m.size - this._filled, n - i);
      if (take === 0) return;
      this._body = grown(this._body, this._filled, this._filled + take, m.size);
      this._body.set(chunk.subarray(i, i + take), this._filled);
      this._filled += take;
      i += take;
      if (this._filled < m.size) return;
      m.payload = this._body;
      this._msg = this._body = null;
      if (onMessage(m) === false) return;
      continue;
    }
    if (i >= n) return;
    var base = this._head.length, buf;
    if (base) {
      buf = concatBytes([this._head, chunk.subarray(i, i + Math.min(n - i, MAX_HEADER_LEN))]);
    } else {
      buf = chunk.subarray(i);
    }
    if (this.readVersion && this.version === null) {
      if (buf.length < 2) { this._head = buf.slice(); return; }
      var v = readHex(buf, 0, 2);
      if (v !== this.expectVersion) {
        throw protocolError(ERR_UNSUPPORTED, 'peer speaks version ' +
                            JSON.stringify(String.fromCharCode(buf[0], buf[1])));
      }
      this.version = v;
      i += 2 - base;
      this._head = EMPTY;
      continue;
    }
    var r = parseHeader(buf, 0, buf.length);
    if (!r) { this._head = buf.slice(); return; }
    i += r.len - base;
    this._head = EMPTY;
    m = r.msg;
    if (LAYOUT[m.t].indexOf('z') !== -1) {
      if (m.size > this.maxPayloadSize) {
        if (!this.skipOversized) {
          throw protocolError(ERR_INVALID_MSG, 'payload of ' + m.size + ' bytes exceeds the limit');
        }
        m.payload = null;
        m.oversized = true;
        this._skip = m.size;
      } else if (m.size <= n - i) {
        // The whole payload is here: copy exactly its bytes (the chunk may be much larger).
        m.payload = new Buf(m.size);
        m.payload.set(chunk.subarray(i, i + m.size));
        i += m.size;
      } else {
        this._msg = m;
        this._filled = 0;
        continue;
      }
    }
    if (onMessage(m) === false) return;
  }
};

var protocol = {
  /** Protocol version implemented */
  Version: 1,
  MsgTypeSingleReq: T_SINGLE_REQ,
  MsgTypeStreamReq: T_STREAM_REQ,
  MsgTypeStreamReqPart: T_STREAM_REQ_PART,
  MsgTypeSingleRes: T_SINGLE_RES,
  MsgTypeStreamRes: T_STREAM_RES,
  MsgTypeErrorRes: T_ERROR_RES,
  MsgTypeRetryRes: T_RETRY_RES,
  MsgTypeNotification: T_NOTIFICATION,
  MsgTypeHeartbeat: T_HEARTBEAT,
  MsgTypeProtocolError: T_PROTOCOL_ERROR,
  ErrorAbnormal: ERR_ABNORMAL,
  ErrorUnsupported: ERR_UNSUPPORTED,
  ErrorInvalidMsg: ERR_INVALID_MSG,
  ErrorTimeout: ERR_TIMEOUT,
  HeartbeatMsgMaxLoad: 0xffff,
  MaxNameLength: MAX_NAME_LEN,
  MaxHeaderLength: MAX_HEADER_LEN,
  encodeHeader: encodeHeader,
  encodeMsg: encodeMsg,
  parseHeader: parseHeader,
  Decoder: Decoder,
  protocolError: protocolError
};

// Byte-protocol helpers with the reference library's `protocol.binary` names.
protocol.binary = {
  versionBuf: Buf.fromString('01'),
  makeFixnum: function (n, digits) { var b = new Buf(digits); putHex(b, 0, n, digits); return b; },
  parseVersion: function (b) { return readHex(toBytes(b), 0, 2); },
  makeMsg: function (t, id, name, wait, size) {
    return encodeHeader({t: t, id: id, name: name, wait: wait, size: size, code: size});
  },
  makeHeartbeatMsg: function (load, time) {
    return encodeHeader({t: T_HEARTBEAT, load: load, time: time});
  },
  parseMsg: function (b) {
    b = toBytes(b);
    var r = parseHeader(b, 0, b.length);
    return r ? r.msg : null;
  }
};

// ============================================================================================
// Handlers

/**
 * Maps operation and notification names to handler functions. Registering under the empty
 * name "" installs a fallback for names without their own handler. Callable without `new`.
 */
function Handlers() {
  if (!(this instanceof Handlers)) return new Handlers();
  this.reqHandlers = Object.create(null);
  this.reqFallbackHandler = null;
  this.noteHandlers = Object.create(null);
  this.noteFallbackHandler = null;
  this.streamHandlers = Object.create(null);
  this.streamFallbackHandler = null;
}

function decodeJSONPayload(buf) {
  if (buf == null || buf.length === 0) return undefined;
  return JSON.parse(typeof buf === 'string' ? buf : utf8Decoder.decode(buf));
}

function encodeJSON(v) {
  var s = JSON.stringify(v);
  return s === undefined ? 'null' : s;
}

/** Handle single requests for `op` with raw payloads: h(data: Buf, result, op, sock). */
Handlers.prototype.handleBufferRequest = function (op, h) {
  if (!op) this.reqFallbackHandler = h; else this.reqHandlers[op] = h;
};

/** Handle single requests for `op` with JSON values: h(value, result, op, sock). */
Handlers.prototype.handleRequest = function (op, h) {
  this.handleBufferRequest(op, function (buf, result, op, sock) {
    var value;
    try {
      value = decodeJSONPayload(buf);
    } catch (e) {
      return result.error('invalid JSON in request payload');
    }
    var resolve = function (v) { result(encodeJSON(v)); };
    resolve.error = result.error;
    var ret = h(value, resolve, op, sock);
    if (isThenable(ret)) return ret.then(resolve);
  });
};

/** Handle notifications `name` with raw payloads: h(data: Buf, name, sock). */
Handlers.prototype.handleBufferNotification = function (name, h) {
  if (!name) this.noteFallbackHandler = h; else this.noteHandlers[name] = h;
};

/** Handle notifications `name` with JSON values: h(value, name, sock). */
Handlers.prototype.handleNotification = function (name, h) {
  this.handleBufferNotification(name, function (buf, name, sock) {
    var value;
    try { value = decodeJSONPayload(buf); } catch (e) { value = undefined; }
    h(value, name, sock);
  });
};

/**
 * Handle stream requests (`s`/`p` messages) for `op`: h(sock, op, input, output).
 * `input` emits 'data'(Buf) per part and 'end' when the requestor ends the stream (and is async
 * iterable). `output.write(buf)` sends a result part, `output.end()` ends the result,
 * `output.error(err)` answers with an error. A thrown error or rejected promise answers with
 * an error too.
 */
Handlers.prototype.handleStreamRequest = function (op, h) {
  if (!op) this.streamFallbackHandler = h; else this.streamHandlers[op] = h;
};

Handlers.prototype.findRequestHandler = function (op) {
  return this.reqHandlers[op] || this.reqFallbackHandler || null;
};
Handlers.prototype.findNotificationHandler = function (name) {
  return this.noteHandlers[name] || this.noteFallbackHandler || null;
};
Handlers.prototype.findStreamRequestHandler = function (op) {
  return this.streamHandlers[op] || this.streamFallbackHandler || null;
};

// ============================================================================================
// Chunk streams (incoming stream-request input, stream-request responses)

/**
 * A readable sequence of Buf chunks: emits 'data'(chunk) and then 'end'(err|null) (also
 * 'close'(err|null)). Chunks that arrive before any 'data'/'end' listener is attached are kept
 * and delivered once one is. Also async iterable: `for await (const chunk of stream)`.
 */
function ChunkStream() {
  this._chunks = [];
  this._flowing = false;
  this._done = false;
  this._doneEmitted = false;
  this._error = null;
  this._waiters = [];
  this._sock = null;         // whose streamBufferLimit the kept chunks count against
  this._queued = 0;          // bytes kept, with PART_OVERHEAD each
  this._onOverflow = null;   // called when the limit makes this stream give up
}
ChunkStream.prototype = Object.create(EventEmitter.prototype);
ChunkStream.prototype.constructor = ChunkStream;

ChunkStream.prototype._listenerAdded = function (e) {
  if (!this._flowing && (e === 'data' || e === 'end' || e === 'close')) {
    this._flowing = true;
    var self = this;
    Promise.resolve().then(function () { self._drain(); });
  }
};
ChunkStream.prototype._take = function () {
  var chunk = this._chunks.shift();
  this._uncount(chunk.length + PART_OVERHEAD);
  return chunk;
};
ChunkStream.prototype._uncount = function (cost) {
  if (this._sock) this._sock._unkeep(this, cost); else this._queued -= cost;
};
ChunkStream.prototype._drain = function () {
  while (this._chunks.length) this.emit('data', this._take());
  if (this._done && !this._doneEmitted) {
    this._doneEmitted = true;
    this.emit('end', this._error);
    this.emit('close', this._error);
  }
};
ChunkStream.prototype._push = function (chunk) {
  if (this._done || this._discard) return;
  if (this._waiters.length) return this._waiters.shift().resolve({value: chunk, done: false});
  // Listeners take parts as they come: nothing is kept, nothing to limit.
  if (this._flowing && this._chunks.length === 0) { this.emit('data', chunk); return; }
  var cost = chunk.length + PART_OVERHEAD, s = this._sock;
  if (s && !s._admitStreamBytes(this, cost)) return;
  this._chunks.push(chunk);
  if (s) s._keep(this, cost); else this._queued += cost;
};
ChunkStream.prototype._end = function (err) {
  if (this._done) return;
  this._done = true;
  this._error = err || null;
  var w;
  while ((w = this._waiters.shift())) {
    if (err) w.reject(err); else w.resolve({value: undefined, done: true});
  }
  if (this._flowing) this._drain();
};
// Give up because of the stream buffer limit: drop what is kept and end with `err`, even if
// the stream had already ended normally (its consumer will not see the dropped parts).
ChunkStream.prototype._overflow = function (err) {
  if (this._queued) this._uncount(this._queued);
  this._chunks = [];
  if (this._onOverflow) this._onOverflow(err);
  if (this._doneEmitted) return;
  this._done = false;
  this._end(err);
};
/** True once the stream has ended */
Object.defineProperty(ChunkStream.prototype, 'ended', {get: function () { return this._done; }});
ChunkStream.prototype[Symbol.asyncIterator] = function () {
  var self = this;
  return {
    next: function () {
      if (self._chunks.length) return Promise.resolve({value: self._take(), done: false});
      if (self._done) {
        return self._error ? Promise.reject(self._error) : Promise.resolve({value: undefined, done: true});
      }
      return new Promise(function (resolve, reject) {
        self._waiters.push({resolve: resolve, reject: reject});
      });
    },
    return: function () {
      // The consumer stopped (break out of for-await): what is kept, or arrives later, is
      // of no use to anyone.
      if (self._queued) self._uncount(self._queued);
      self._chunks = [];
      self._discard = true;
      return Promise.resolve({value: undefined, done: true});
    },
    [Symbol.asyncIterator]: function () { return this; }
  };
};

// ============================================================================================
// StreamRequest (outgoing stream requests)

/**
 * An outgoing stream request, made by `sock.streamRequest(op)`. `write(buf)` sends a part
 * (the first write sends the `s` message), `end()` ends the request. Result parts arrive as
 * 'data'(Buf) events; 'end'(err|null) (and its alias 'close') follows. Async iterable.
 */
function StreamRequest(s, op, id) {
  if (!(this instanceof StreamRequest)) return new StreamRequest(s, op, id);
  ChunkStream.call(this);
  Object.defineProperty(this, 's', {value: s});
  this.op = op;
  this.id = id;
  this.started = false;
  this.ended = false;
  this._entry = null;
}
StreamRequest.prototype = Object.create(ChunkStream.prototype);
StreamRequest.prototype.constructor = StreamRequest;
Object.defineProperty(StreamRequest.prototype, 'ended', {writable: true, value: false});

/** Write a request part. An empty or null `buf` ends the request. No-op after the end. */
StreamRequest.prototype.write = function (buf) {
  if (this.ended) return;
  var empty = buf == null || (typeof buf === 'string' ? buf.length === 0 : toBytes(buf).length === 0);
  var s = this.s;
  if (!this.started) {
    this.started = true;
    s._write(s._frames({t: T_STREAM_REQ, id: this.id, name: this.op}, empty ? null : buf), this._entry);
    if (!empty) return;
  }
  if (empty) this.ended = true;
  s._write(s._frames({t: T_STREAM_REQ_PART, id: this.id}, empty ? null : buf), this._entry);
};

/** End the request (sends the empty part). */
StreamRequest.prototype.end = function () { this.write(null); };

// ============================================================================================
// Sock

var SOCK_OPTIONS = ['heartbeatInterval', 'sendBufferLimit', 'maxRetries', 'minReconnectDelay',
                    'maxReconnectDelay', 'maxPayloadSize', 'streamBufferLimit', 'maxPendingRequests',
                    'maxIncomingRequests', 'maxRetryWait', 'requestTimeout', 'WebSocket'];

// Stream requests refused or abandoned whose remaining parts we skip: the newest are
// remembered, so a peer opening streams it never ends cannot grow the set.
var IGNORED_STREAMS_KEPT = 1024;
// The wait we ask of a peer whose requests we refuse (over maxIncomingRequests).
var REFUSAL_WAIT = 500;

/**
 * An Error for a limit that was reached: `limit` is the name of the Sock option.
 * @param {string} limit
 * @param {string} text
 */
function limitError(limit, text) {
  var err = new Error(text);
  err.limit = limit;
  return err;
}

function payloadTooLarge(size, limit) {
  var err = limitError('maxPayloadSize', 'payload too large (' + size + ' bytes; maxPayloadSize ' +
                       limit + ')');
  err.size = size;
  return err;
}

/**
 * A gotalk connection over a WebSocket. Callable with or without `new`.
 * Events: 'open'(sock), 'close'(err|null), 'heartbeat'({time, load}),
 * 'notification'({name, data}).
 * @param {Handlers} [handlers] defaults to gotalk.defaultHandlers
 * @param {object} [options] heartbeatInterval, sendBufferLimit, maxRetries, minReconnectDelay,
 *   maxReconnectDelay, maxPayloadSize, streamBufferLimit, maxPendingRequests,
 *   maxIncomingRequests, maxRetryWait, requestTimeout, WebSocket
 */
function Sock(handlers, options) {
  if (!(this instanceof Sock)) return new Sock(handlers, options);
  if (handlers && !(handlers instanceof Handlers) && options === undefined &&
      typeof handlers.findRequestHandler !== 'function') {
    options = handlers;
    handlers = options.handlers;
  }
  this.handlers = handlers || gotalk.defaultHandlers;
  /** Milliseconds between heartbeats we send; 0 disables them. Default 20 s. */
  this.heartbeatInterval = 20000;
  /** Messages kept while not connected (connecting or reconnecting); 0 disables buffering. */
  this.sendBufferLimit = 20;
  /** How many times a request answered with RetryResult is re-sent before failing. */
  this.maxRetries = 3;
  /** Reconnect back-off bounds for openKeepAlive, in milliseconds. */
  this.minReconnectDelay = 500;
  this.maxReconnectDelay = 5000;
  /**
   * Largest payload accepted from the peer, in bytes (default 16 MiB). A bigger one is skipped
   * as it arrives, never buffered: a result fails its request, a request is answered with an
   * ErrorResult, a notification is dropped. Also bounds a stream result to a single request.
   */
  this.maxPayloadSize = DEFAULT_MAX_PAYLOAD;
  /**
   * Bytes of stream parts received and not yet consumed, for all streams of the connection
   * together (default 32 MiB). Each kept part counts its size plus 256 bytes. When a part
   * would go over, the stream holding the most ends with an error and its parts are dropped.
   */
  this.streamBufferLimit = DEFAULT_STREAM_BUFFER;
  /** Our requests awaiting results at once (default 4096); beyond, a request fails at once. */
  this.maxPendingRequests = 4096;
  /**
   * The peer's requests (and stream requests) being handled at once (default 256); beyond, or
   * while more than maxPayloadSize bytes of ours wait unsent, they get a RetryResult.
   */
  this.maxIncomingRequests = 256;
  /** Longest RetryResult wait honoured, in ms (default 30 s); a longer one fails the request. */
  this.maxRetryWait = 30000;
  /**
   * Milliseconds a single request may wait for its result, retries included (default 5 min);
   * 0 = no limit. Stream requests have no timeout.
   */
  this.requestTimeout = 300000;
  /** WebSocket constructor to use (else gotalk.WebSocket, else globalThis.WebSocket). */
  this.WebSocket = null;
  if (options) {
    SOCK_OPTIONS.forEach(function (k) { if (options[k] !== undefined) this[k] = options[k]; }, this);
  }
  /** The underlying WebSocket, or null */
  this.ws = null;
  this.keepalive = null;
  this._state = 'closed';   // closed | connecting | open
  this._addr = null;
  this._openCb = null;
  this._decoder = null;
  this._reading = false;
  this._inbox = [];
  this._inboxBytes = 0;
  this._queue = [];          // [{frames, entry}] waiting for a connection
  this._pending = new Map(); // request id -> entry
  this._inStreams = new Map(); // incoming stream request id -> state
  this._ignoredStreams = new Set();
  this._incoming = {n: 0};   // the peer's requests being handled on this connection
  this._streamBuffered = 0;  // bytes of stream parts kept for the application (streamBufferLimit)
  this._hoarders = new Set(); // who keeps them: streams, and single requests collecting parts
  this._nextId = 0;
  this._nextStreamId = 0;
  this._hbTimer = null;
  this._pendingClose = false;
  this._ending = false;
  this._closeError = null;
}
Sock.prototype = Object.create(EventEmitter.prototype);
Sock.prototype.constructor = Sock;

var WS_CLOSE_NAMES = {1000: 'normal', 1001: 'going away', 1002: 'protocol error',
  1003: 'unsupported', 1005: 'no status', 1006: 'abnormal', 1007: 'inconsistent',
  1008: 'invalid message', 1009: 'too large', 1011: 'internal error'};

/** True while a connection is open */
Object.defineProperty(Sock.prototype, 'isOpen', {get: function () { return this._canSend(); }});

Sock.prototype._canSend = function () {
  return this._state === 'open' && !!this.ws && this.ws.readyState === 1;
};

/** Address the socket is (or was last) connected to, or null. */
Sock.prototype.address = function () {
  return this.ws ? this.ws.url || this._addr : this._addr;
};

// Frames for one message: the header, then the payload when non-empty (strings as text frames).
Sock.prototype._frames = function (m, payload) {
  var size = 0, frame = null;
  if (payload != null) {
    if (typeof payload === 'string') { size = utf8Length(payload); frame = payload; }
    else { frame = toBytes(payload); size = frame.length; }
  }
  m.size = size;
  var h = encodeHeader(m);
  return size ? [h, frame] : [h];
};

Sock.prototype._sendFrames = function (frames) {
  try {
    for (var i = 0; i < frames.length; i++) this.ws.send(frames[i]);
  } catch (err) {
    if (!this._canSend()) throw new Error('socket is closed');
    throw err;
  }
};

// Send, or keep for later while (re)connecting. `entry` (a pending request) is marked sent.
Sock.prototype._write = function (frames, entry) {
  if (this._canSend() && this._queue.length === 0) {
    this._sendFrames(frames);
    if (entry) entry.sent = true;
    return;
  }
  if (this._state === 'connecting' || this._state === 'open' ||
      (this.keepalive && this.keepalive.enabled)) {
    if (this._queue.length >= this.sendBufferLimit) {
      throw new Error(this.sendBufferLimit > 0 ?
        'send buffer full (' + this.sendBufferLimit + ' messages waiting for the connection)' :
        'socket is not connected');
    }
    this._queue.push({frames: frames, entry: entry});
    this._flushQueue();
    return;
  }
  throw new Error('socket is closed');
};

// Send a response/heartbeat/protocol error now, or drop it when not connected.
Sock.prototype._respond = function (m, payload) {
  var frames = this._frames(m, payload);
  if (this._canSend()) {
    try { this._sendFrames(frames); } catch (e) { /* connection went away */ }
  }
};

Sock.prototype._flushQueue = function () {
  while (this._queue.length && this._canSend()) {
    var q = this._queue.shift();
    if (q.entry && q.entry.failed) continue;
    this._sendFrames(q.frames);
    if (q.entry) q.entry.sent = true;
  }
};

function base36(n, digits) {
  var s = n.toString(36);
  while (s.length < digits) s = '0' + s;
  return s;
}

Sock.prototype._newRequestId = function () {
  for (;;) {
    var id = base36(this._nextId, 4);
    this._nextId = (this._nextId + 1) % 1679616; // 36^4
    if (!this._pending.has(id)) return id;
  }
};

Sock.prototype._newStreamId = function () {
  for (;;) {
    var id = '!' + base36(this._nextStreamId, 3);
    this._nextStreamId = (this._nextStreamId + 1) % 46656; // 36^3
    if (!this._pending.has(id)) return id;
  }
};

// ---- requests -------------------------------------------------------------------------------

Sock.prototype._tooManyPending = function () {
  if (this._pending.size < this.maxPendingRequests) return null;
  return limitError('maxPendingRequests', 'too many requests awaiting results (' +
                    this._pending.size + '; maxPendingRequests ' + this.maxPendingRequests + ')');
};

Sock.prototype._request = function (op, payload, done) {
  var refused = this._tooManyPending();
  if (refused) return done(refused, null);
  var s = this, id = this._newRequestId(), frames;
  try {
    frames = this._frames({t: T_SINGLE_REQ, id: id, name: op}, payload);
  } catch (err) {
    return done(err, null);
  }
  var entry = {id: id, op: op, kind: 'buffer', frames: frames, done: done, tries: 0,
               sent: false, parts: null, partsLen: 0, retryTimer: null, deadline: null,
               _queued: 0, _overflow: null};
  // Parts of a stream result being collected count against streamBufferLimit like any kept
  // part; when they make this request the largest holder, it fails.
  entry._overflow = function (err) { s._finish(entry, err); };
  this._pending.set(id, entry);
  try {
    this._write(frames, entry);
  } catch (err) {
    this._pending.delete(id);
    return done(err, null);
  }
  var ms = this.requestTimeout;
  if (ms > 0) {
    entry.deadline = setTimeout(function () {
      entry.deadline = null;
      if (s._pending.get(id) !== entry) return;
      var err = limitError('requestTimeout', 'no result for "' + op + '" within ' + ms +
                           ' ms (requestTimeout)');
      err.isTimeout = true;
      s._finish(entry, err);
    }, Math.min(ms, MAX_TIMER));
    unrefTimer(entry.deadline);
  }
};

// Longest delay setTimeout takes as asked (a longer one fires at once).
var MAX_TIMER = 0x7fffffff;

// A pending timer must not keep a Node.js process alive by itself.
function unrefTimer(t) {
  if (t && typeof t.unref === 'function') t.unref();
}

function promiseOrCallback(cb, start) {
  if (typeof cb === 'function') { start(cb); return undefined; }
  return new Promise(function (resolve, reject) {
    start(function (err, result) { if (err) reject(err); else resolve(result); });
  });
}

/**
 * Request `op` with raw payload `buf` (string, Uint8Array, ArrayBuffer or null).
 * Returns a promise of the result (a Buf) unless `cb(err, result)` is given.
 */
Sock.prototype.bufferRequest = function (op, buf, cb) {
  if (typeof buf === 'function' && cb === undefined) { cb = buf; buf = null; }
  var s = this;
  return promiseOrCallback(cb, function (done) { s._request(op, buf, done); });
};

/**
 * Request `op` with `value` encoded as JSON (no payload when `value` is undefined).
 * Returns a promise of the JSON-decoded result unless `cb(err, result)` is given.
 */
Sock.prototype.request = function (op, value, cb) {
  if (typeof value === 'function' && cb === undefined) { cb = value; value = undefined; }
  var s = this, payload = value === undefined ? null : encodeJSON(value);
  return promiseOrCallback(cb, function (done) {
    s._request(op, payload, function (err, buf) {
      if (err) return done(err, null);
      var v;
      try {
        v = decodeJSONPayload(buf);
      } catch (e) {
        return done(new Error('invalid JSON in result of "' + op + '": ' + e.message), null);
      }
      done(null, v);
    });
  });
};

/** @deprecated use request */
Sock.prototype.requestp = function (op, value) { return this.request(op, value); };
/** @deprecated use bufferRequest */
Sock.prototype.bufferRequestp = function (op, buf) { return this.bufferRequest(op, buf); };

/** Start a stream request for `op`; nothing is sent until the first write()/end(). */
Sock.prototype.streamRequest = function (op) {
  var refused = this._tooManyPending();
  var id = this._newStreamId(), req = new StreamRequest(this, op, id), s = this;
  if (refused) {
    // Nothing is sent: writes are no-ops and the stream ends with the error.
    req.started = req.ended = true;
    req._end(refused);
    return req;
  }
  var entry = {id: id, op: op, kind: 'stream', req: req, sent: false, retryTimer: null,
               deadline: null};
  req._entry = entry;
  req._sock = this;
  req._onOverflow = function () {
    if (s._pending.get(id) === entry) s._finish(entry, null, null, true);
  };
  this._pending.set(id, entry);
  return req;
};

/** Send notification `name` with raw payload `buf`. Throws when it can not be sent or kept. */
Sock.prototype.bufferNotify = function (name, buf) {
  this._write(this._frames({t: T_NOTIFICATION, name: name}, buf), null);
};

/** Send notification `name` with `value` encoded as JSON. */
Sock.prototype.notify = function (name, value) {
  this.bufferNotify(name, value === undefined ? null : encodeJSON(value));
};

/** Send a heartbeat now with `load` in [0, 1]. Throws when not connected. */
Sock.prototype.sendHeartbeat = function (load) {
  if (!this._canSend()) throw new Error('socket is closed');
  load = Math.min(1, Math.max(0, +load || 0));
  this._sendFrames([encodeHeader({t: T_HEARTBEAT, load: Math.round(load * 0xffff)})]);
};

Sock.prototype._startHeartbeats = function () {
  var s = this;
  clearTimeout(s._hbTimer);
  s._hbTimer = null;
  if (!(s.heartbeatInterval > 0)) return;
  var beat = function () {
    s._hbTimer = null;
    if (!s._canSend()) return;
    try { s.sendHeartbeat(0); } catch (e) { return; }
    s._hbTimer = setTimeout(beat, s.heartbeatInterval);
    if (s._hbTimer && typeof s._hbTimer.unref === 'function') s._hbTimer.unref();
  };
  beat();
};

// ---- connection lifecycle -------------------------------------------------------------------

function resolveAddress(addr) {
  if (!addr) {
    addr = gotalk.defaultResponderAddress;
    if (!addr) throw new Error('address not specified (no gotalk.defaultResponderAddress)');
  }
  addr = String(addr);
  if (/^wss?:\/\//i.test(addr)) return addr;
  if (/^https?:\/\//i.test(addr)) return addr.replace(/^http/i, 'ws');
  var loc = root.location;
  if (loc && loc.host) {
    var scheme = loc.protocol === 'https:' ? 'wss:' : 'ws:';
    if (addr.slice(0, 2) === '//') return scheme + addr;
    if (addr[0] === '/') return scheme + '//' + loc.host + addr;
  }
  throw new Error('unsupported address ' + JSON.stringify(addr));
}

Sock.prototype._webSocketImpl = function () {
  var WS = this.WebSocket || gotalk.WebSocket || root.WebSocket;
  if (typeof WS !== 'function') {
    throw new Error('no WebSocket implementation: pass one as {WebSocket} or set gotalk.WebSocket');
  }
  return WS;
};

/**
 * Open a connection to `addr` (default: gotalk.defaultResponderAddress).
 * `cb(err, sock)` is called once the connection is open or has failed.
 */
Sock.prototype.open = function (addr, cb) {
  if (typeof addr === 'function' && cb === undefined) { cb = addr; addr = null; }
  if (this.ws) throw new Error('socket is already open');
  var url = resolveAddress(addr), WS = this._webSocketImpl(), s = this, ws;
  this._addr = url;
  this._state = 'connecting';
  this._openCb = cb || null;
  try {
    ws = new WS(url);
  } catch (err) {
    this._state = 'closed';
    this._openCb = null;
    this._failAll(err, !!(this.keepalive && this.keepalive.enabled));
    if (cb) cb(err, null);
    this.emit('close', err);
    if (this.keepalive) this.keepalive._closed(err, false);
    return this;
  }
  this.ws = ws;
  try { ws.binaryType = 'arraybuffer'; } catch (e) { /* read-only in some implementations */ }
  ws.onopen = function () {
    if (s.ws !== ws) return;
    s.adopt(ws);
    s.handshake();
    s.startReading();
  };
  ws.onmessage = function (ev) { if (s.ws === ws) s._onData(ev.data); };
  ws.onerror = function () { /* a close event follows */ };
  ws.onclose = function (ev) { s._onWsClose(ws, ev); };
  return this;
};

/**
 * Adopt an already OPEN WebSocket. Call handshake() and startReading() after it
 * (open() does all three).
 */
Sock.prototype.adopt = function (ws) {
  if (ws.readyState !== 1) throw new Error('web socket readyState != OPEN');
  var s = this;
  if (this.ws !== ws) {
    this.ws = ws;
    try { ws.binaryType = 'arraybuffer'; } catch (e) { /* ignore */ }
    ws.onmessage = function (ev) { if (s.ws === ws) s._onData(ev.data); };
    ws.onclose = function (ev) { s._onWsClose(ws, ev); };
  }
  this._addr = ws.url || this._addr;
  this._state = 'open';
  this._decoder = new Decoder({readVersion: true, expectVersion: 1,
                               maxPayloadSize: this.maxPayloadSize, skipOversized: true});
  // Each decoded message, handled as soon as it is whole; decoding stops once this
  // connection is closing.
  this._deliver = function (m) {
    try {
      if (m.oversized) s._onOversized(m); else s._dispatch(m);
    } catch (err) {
      logError(err);   // an application listener threw; the connection goes on
    }
    return s.ws === ws && s._reading;
  };
  this._reading = false;
  this._inbox = [];
  this._inboxBytes = 0;
  this._incoming = {n: 0};
};

/** Send our protocol version (the first thing on a new connection). */
Sock.prototype.handshake = function () {
  this._sendFrames([protocol.binary.versionBuf]);
};

/** Start processing received data and heartbeats; flush messages kept while connecting. */
Sock.prototype.startReading = function () {
  var s = this;
  s._reading = true;
  s._startHeartbeats();
  s._flushQueue();
  var cb = s._openCb;
  s._openCb = null;
  if (cb) cb(null, s);
  s.emit('open', s);
  if (s.keepalive) s.keepalive._opened();
  var inbox = s._inbox;
  s._inbox = [];
  s._inboxBytes = 0;
  for (var i = 0; i < inbox.length && s._reading; i++) s._onData(inbox[i]);
};

Sock.prototype._onData = function (data) {
  if (!this._reading) {
    // Received before startReading() (adopt() used directly): kept, within streamBufferLimit.
    this._inboxBytes += data.byteLength !== undefined ? data.byteLength : data.length * 3;
    if (this._inboxBytes > this.streamBufferLimit && this.ws) {
      var err = protocolError(ERR_ABNORMAL, 'more than ' + this.streamBufferLimit +
                              ' bytes received before startReading() (streamBufferLimit)');
      err.limit = 'streamBufferLimit';
      this.closeError(ERR_ABNORMAL, err);
      return;
    }
    this._inbox.push(data);
    return;
  }
  var ws = this.ws, perr = null;
  try {
    this._decoder.feed(data, this._deliver);
  } catch (err) {
    perr = err.isGotalkProtocolError ? err : protocolError(ERR_INVALID_MSG, err.message);
  }
  if (perr && this.ws === ws) this.closeError(perr.code, perr);
};

/**
 * Close the connection because of protocol error `code`: send a ProtocolError message and close
 * the WebSocket with status 4000 + code. The 'close' event gets an Error with that code.
 */
Sock.prototype.closeError = function (code, err) {
  if (!this.ws) return;
  this._closeError = this._closeError || err || protocolError(code);
  this._reading = false;
  this._respond({t: T_PROTOCOL_ERROR, code: code});
  try { this.ws.close(4000 + code); } catch (e) { /* ignore */ }
};

Sock.prototype._dispatch = function (m) {
  switch (m.t) {
  case T_SINGLE_REQ: return this._onRequest(m);
  case T_STREAM_REQ: return this._onStreamRequest(m);
  case T_STREAM_REQ_PART: return this._onStreamPart(m);
  case T_SINGLE_RES: case T_STREAM_RES: case T_ERROR_RES: case T_RETRY_RES:
    return this._onResult(m);
  case T_NOTIFICATION: return this._onNotification(m);
  case T_HEARTBEAT:
    return this.emit('heartbeat', {time: new Date(m.time * 1000), load: m.load / 0xffff});
  case T_PROTOCOL_ERROR:
    this._closeError = protocolError(m.code, 'reported by peer');
    this._reading = false;
    try { this.ws.close(4000 + m.code); } catch (e) { /* ignore */ }
  }
};

function logError(err) {
  if (typeof console !== 'undefined' && console.error) console.error(err);
}

// Admit one of the peer's requests, or refuse it with a RetryResult: over maxIncomingRequests,
// or while more than maxPayloadSize bytes of ours wait unsent (a peer that does not read must
// not make us queue answers without end). Returns the counter to decrement when answered.
Sock.prototype._admitIncoming = function (id, what) {
  var incoming = this._incoming, backlog = (this.ws && this.ws.bufferedAmount) || 0;
  if (incoming.n < this.maxIncomingRequests && backlog <= this.maxPayloadSize) {
    incoming.n++;
    return incoming;
  }
  this._respond({t: T_RETRY_RES, id: id, wait: REFUSAL_WAIT}, what + ' rate limit');
  return null;
};

// Incoming single request
Sock.prototype._onRequest = function (m) {
  var s = this, id = m.id, answered = false;
  var h = this.handlers.findRequestHandler(m.name);
  if (typeof h !== 'function') {
    return this._respond({t: T_ERROR_RES, id: id}, 'unknown operation "' + m.name + '"');
  }
  var incoming = this._admitIncoming(id, 'request');
  if (!incoming) return;
  var result = function (out) {
    if (answered) return;
    answered = true;
    incoming.n--;
    s._respond({t: T_SINGLE_RES, id: id}, out == null ? null : out);
  };
  result.error = function (err) {
    if (answered) return;
    answered = true;
    incoming.n--;
    s._respond({t: T_ERROR_RES, id: id}, errorText(err));
  };
  try {
    var ret = h(m.payload, result, m.name, this);
    if (isThenable(ret)) ret.then(function (v) { result(v); }, result.error);
  } catch (err) {
    result.error(err);
  }
};

// Incoming stream request
Sock.prototype._onStreamRequest = function (m) {
  var s = this, id = m.id;
  if (this._inStreams.has(id) || this._ignoredStreams.has(id)) {
    // A reused id while that stream is still going: ignore it (and its parts) safely.
    return;
  }
  var h = this.handlers.findStreamRequestHandler(m.name);
  if (typeof h !== 'function') {
    this._ignoreStream(id);
    this._respond({t: T_ERROR_RES, id: id}, this.handlers.findRequestHandler(m.name) ?
      'stream requests not supported' : 'unknown operation "' + m.name + '"');
    return;
  }
  var incoming = this._admitIncoming(id, 'stream');
  if (!incoming) { this._ignoreStream(id); return; }
  var input = new ChunkStream();
  input.op = m.name;
  input.id = id;
  input._sock = this;
  var st = {input: input, finished: false};
  var finish = function () {
    if (st.finished) return;
    st.finished = true;
    incoming.n--;
    if (s._inStreams.get(id) === st) {
      s._inStreams.delete(id);
      if (!input.ended) s._ignoreStream(id);   // swallow the rest of the request
    }
  };
  // Parts the handler does not take cannot pile up: over streamBufferLimit the request is
  // answered with the error and the rest of it skipped.
  input._onOverflow = function (err) { output.error(err); };
  var output = {
    id: id,
    write: function (buf) {
      if (st.finished || buf == null) return;
      if ((typeof buf === 'string' ? buf.length : toBytes(buf).length) === 0) return;
      s._respond({t: T_STREAM_RES, id: id}, buf);
    },
    end: function (buf) {
      if (st.finished) return;
      if (buf != null) output.write(buf);
      finish();
      s._respond({t: T_STREAM_RES, id: id}, null);
    },
    error: function (err) {
      if (st.finished) return;
      finish();
      s._respond({t: T_ERROR_RES, id: id}, errorText(err));
    }
  };
  this._inStreams.set(id, st);
  try {
    var ret = h(this, m.name, input, output);
    if (isThenable(ret)) ret.then(null, output.error);
  } catch (err) {
    output.error(err);
  }
  if (m.payload.length) input._push(m.payload);
};

Sock.prototype._ignoreStream = function (id) {
  var ignored = this._ignoredStreams;
  if (ignored.size >= IGNORED_STREAMS_KEPT) ignored.delete(ignored.values().next().value);
  ignored.add(id);
};

Sock.prototype._onStreamPart = function (m) {
  var st = this._inStreams.get(m.id);
  if (!st) {
    if (this._ignoredStreams.has(m.id)) {
      if (m.payload.length === 0) this._ignoredStreams.delete(m.id);
    } else {
      this._respond({t: T_ERROR_RES, id: m.id}, 'no stream request with this id');
    }
    return;
  }
  if (m.payload.length) {
    st.input._push(m.payload);
  } else {
    st.input._end(null);
    if (st.finished) this._inStreams.delete(m.id);
  }
};

// Result for one of our requests
Sock.prototype._onResult = function (m) {
  var e = this._pending.get(m.id);
  if (!e) return;
  var t = m.t, payload = m.payload;
  if (t === T_RETRY_RES) return this._onRetry(e, m);
  if (e.kind === 'stream') {
    if (t === T_ERROR_RES) return this._finish(e, new Error(payload.toString()));
    if (payload.length) e.req._push(payload);
    if (t === T_SINGLE_RES || payload.length === 0) this._finish(e, null);
    return;
  }
  if (t === T_STREAM_RES) {
    // A stream answer to a single request: collect it, up to maxPayloadSize in all.
    if (payload.length) {
      var len = e.partsLen + payload.length;
      if (len > this.maxPayloadSize) {
        var err = limitError('maxPayloadSize', 'stream result to a single request too large (' +
          len + ' bytes so far; maxPayloadSize ' + this.maxPayloadSize + ')');
        err.size = len;
        return this._finish(e, err);
      }
      var cap = e.parts ? e.parts.length : 0, parts = grown(e.parts, e.partsLen, len, this.maxPayloadSize);
      if (parts.length > cap) {
        if (!this._admitStreamBytes(e, parts.length - cap)) return;
        this._keep(e, parts.length - cap);
      }
      e.parts = parts;
      e.parts.set(payload, e.partsLen);
      e.partsLen = len;
      return;
    }
    payload = e.parts ? e.parts.subarray(0, e.partsLen) : payload;
  }
  this._finish(e, t === T_ERROR_RES ? new Error(payload.toString()) : null, payload);
};

// A message whose payload was over maxPayloadSize: it is skipped, and whoever it was for told.
Sock.prototype._onOversized = function (m) {
  var err = payloadTooLarge(m.size, this.maxPayloadSize), st;
  switch (m.t) {
  case T_SINGLE_RES: case T_STREAM_RES: case T_ERROR_RES: case T_RETRY_RES:
    var e = this._pending.get(m.id);
    if (e) this._finish(e, err);
    return;
  case T_SINGLE_REQ:
    // The wording of the Rust server, for the same refusal.
    return this._respond({t: T_ERROR_RES, id: m.id}, 'payload too large (' + m.size +
                         ' bytes; limit ' + this.maxPayloadSize + ')');
  case T_STREAM_REQ:
    if (this._inStreams.has(m.id) || this._ignoredStreams.has(m.id)) return;
    this._ignoreStream(m.id);
    return this._respond({t: T_ERROR_RES, id: m.id}, 'payload too large (' + m.size +
                         ' bytes; limit ' + this.maxPayloadSize + ')');
  case T_STREAM_REQ_PART:
    st = this._inStreams.get(m.id);
    if (st) {
      this._inStreams.delete(m.id);
      this._ignoreStream(m.id);
      st.input._end(err);
    }
    return;
  case T_NOTIFICATION:
    return logError(new Error('gotalk: notification ' + JSON.stringify(m.name) + ' dropped: ' +
                              err.message));
  }
};

Sock.prototype._hasSentPending = function () {
  var any = false;
  this._pending.forEach(function (e) { if (e.sent) any = true; });
  return any;
};

// Complete request `e`. `overflowed`: its stream already ended itself (stream buffer limit).
Sock.prototype._finish = function (e, err, result, overflowed) {
  if (this._pending.get(e.id) === e) this._pending.delete(e.id);
  clearTimeout(e.retryTimer);
  clearTimeout(e.deadline);
  // Collected parts are the application's from here (the result), or garbage.
  if (e.kind !== 'stream' && e._queued) this._unkeep(e, e._queued);
  e.failed = !!err || !!overflowed;
  if (e.kind === 'stream') {
    e.req.ended = true;
    if (!overflowed) e.req._end(err);
  } else {
    e.done(err, err ? null : result);
  }
  if (this._pendingClose && !this._hasSentPending()) this._closeNow();
};

// `holder` (a stream, or a single request collecting a stream result) keeps `cost` more or
// fewer bytes.
Sock.prototype._keep = function (holder, cost) {
  holder._queued += cost;
  this._streamBuffered += cost;
  this._hoarders.add(holder);
};
Sock.prototype._unkeep = function (holder, cost) {
  holder._queued -= cost;
  this._streamBuffered -= cost;
  if (holder._queued <= 0) this._hoarders.delete(holder);
};

// Make room for `cost` more bytes kept for `stream`: while over streamBufferLimit, the holder
// with the most (counting `stream` with the new part) gives up. False when `stream` did.
Sock.prototype._admitStreamBytes = function (stream, cost) {
  while (this._streamBuffered + cost > this.streamBufferLimit) {
    var victim = stream, most = stream._queued + cost;
    this._hoarders.forEach(function (c) {
      if (c !== stream && c._queued > most) { victim = c; most = c._queued; }
    });
    var err = limitError('streamBufferLimit', 'stream buffer full: ' + most + ' bytes of parts ' +
      'not consumed (streamBufferLimit ' + this.streamBufferLimit + ')');
    victim._overflow(err);
    if (victim === stream) return false;
  }
  return true;
};

Sock.prototype._onRetry = function (e, m) {
  var s = this, wait = m.wait, reason = m.payload.toString() || 'retry';
  var tooLong = wait > this.maxRetryWait;
  if (e.kind === 'stream' || e.tries >= this.maxRetries || tooLong) {
    var err = new Error(reason + ' (retry after ' + wait + ' ms; ' +
      (e.kind === 'stream' ? 'stream requests are not retried' :
       tooLong ? 'longer than maxRetryWait ' + this.maxRetryWait + ' ms' :
       'gave up after ' + e.tries + ' retries') + ')');
    err.isRetry = true;
    err.retryAfter = wait;
    err.wait = wait;
    err.retries = e.tries || 0;
    if (tooLong && e.kind !== 'stream') err.limit = 'maxRetryWait';
    return this._finish(e, err);
  }
  e.tries++;
  e.retryTimer = setTimeout(function () {
    e.retryTimer = null;
    if (s._pending.get(e.id) !== e) return;
    try {
      e.sent = false;
      s._write(e.frames, e);
    } catch (err) {
      s._finish(e, err);
    }
  }, Math.min(wait, MAX_TIMER));
};

Sock.prototype._onNotification = function (m) {
  this.emit('notification', {name: m.name, data: m.payload});
  var h = this.handlers.findNotificationHandler(m.name);
  if (typeof h === 'function') {
    try { h(m.payload, m.name, this); } catch (err) { logError(err); }
  }
};

// Fail pending requests. With `keepUnsent`, requests still waiting to be sent stay queued.
Sock.prototype._failAll = function (err, keepUnsent) {
  var s = this, cause = err || new Error('connection closed');
  Array.from(this._pending.values()).forEach(function (e) {
    if (keepUnsent && !e.sent && !e.retryTimer) return;
    s._pending.delete(e.id);
    clearTimeout(e.retryTimer);
    clearTimeout(e.deadline);
    if (e.kind !== 'stream' && e._queued) s._unkeep(e, e._queued);
    e.failed = true;
    if (e.kind === 'stream') { e.req.ended = true; e.req._end(cause); } else e.done(cause, null);
  });
  if (!keepUnsent) this._queue = [];
};

Sock.prototype._onWsClose = function (ws, ev) {
  if (ws !== this.ws) return;
  var wasOpen = this._state === 'open', code = ev && ev.code, err = this._closeError;
  if (!err && !this._ending) {
    if (code >= 4000 && code < 4100) err = protocolError(code - 4000);
    else if (!wasOpen) err = new Error('connection failed');
    else if (code !== 1000) {
      err = new Error('websocket closed: ' + (WS_CLOSE_NAMES[code] || '#' + code));
      err.closeCode = code;
    }
  }
  ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
  this.ws = null;
  this._state = 'closed';
  this._reading = false;
  this._decoder = null;
  this._inbox = [];
  this._inboxBytes = 0;
  this._closeError = null;
  this._pendingClose = false;
  this._ending = false;
  clearTimeout(this._hbTimer);
  this._hbTimer = null;
  var cause = err || new Error('connection closed');
  this._inStreams.forEach(function (st) { st.finished = true; st.input._end(cause); });
  this._inStreams.clear();
  this._ignoredStreams.clear();
  var keep = !!(this.keepalive && this.keepalive.enabled);
  this._failAll(err, keep);
  var cb = this._openCb;
  this._openCb = null;
  if (cb) cb(err || new Error('connection failed'), null);
  this.emit('close', err || null);
  if (this.keepalive) this.keepalive._closed(err, wasOpen);
};

/**
 * Close the socket. With requests still awaiting results, it closes once they are answered;
 * calling end() again closes at once. Stops keep-alive reconnection.
 */
Sock.prototype.end = function () {
  if (this.keepalive) { this.keepalive.disable(); this.keepalive = null; }
  if (!this._pendingClose && this._canSend() && this._hasSentPending()) {
    this._pendingClose = true;
    return;
  }
  this._closeNow();
};

Sock.prototype._closeNow = function () {
  this._pendingClose = false;
  if (this.ws) {
    this._ending = true;
    this._reading = false;
    try { this.ws.close(1000); } catch (e) { /* ignore */ }
  } else {
    this._state = 'closed';
    this._failAll(new Error('socket is closed'), false);
  }
};

// ---- keep-alive -----------------------------------------------------------------------------

function isLocalAddress(url) {
  var m = /^[a-z]+:\/\/([^\/:?#]+|\[[^\]]*\])/i.exec(url || '');
  var host = m ? m[1].toLowerCase() : '';
  return host === 'localhost' || host === '127.0.0.1' || host === '[::1]';
}

/**
 * Keeps a Sock connected: reconnects after a close with exponential back-off between
 * sock.minReconnectDelay and sock.maxReconnectDelay. While the browser reports being offline
 * it waits for the 'online' event instead (except for localhost addresses).
 */
function KeepAlive(s, addr) {
  this.s = s;
  this.addr = addr;
  this.enabled = false;
  this.isConnected = false;
  this.failures = 0;
  this.waitingForOnline = false;
  this._timer = null;
  this._openedAt = 0;
  var self = this;
  this._onOnline = function () {
    if (!self.enabled || self.isConnected || self.s.ws) return;
    self.failures = 0;
    self._connect();
  };
}
KeepAlive.prototype.enable = function () {
  if (this.enabled) return;
  this.enabled = true;
  if (typeof root.addEventListener === 'function') root.addEventListener('online', this._onOnline);
  if (!this.s.ws) this._connect();
};
KeepAlive.prototype.disable = function () {
  if (!this.enabled) return;
  this.enabled = false;
  clearTimeout(this._timer);
  this._timer = null;
  this.waitingForOnline = false;
  if (typeof root.removeEventListener === 'function') {
    root.removeEventListener('online', this._onOnline);
  }
};
KeepAlive.prototype._connect = function () {
  clearTimeout(this._timer);
  this._timer = null;
  this.waitingForOnline = false;
  if (this.enabled && !this.s.ws) this.s.open(this.addr);
};
KeepAlive.prototype._opened = function () {
  this.isConnected = true;
  this.failures = 0;
  this._openedAt = Date.now();
};
KeepAlive.prototype._offline = function () {
  var nav = root.navigator;
  return typeof root.addEventListener === 'function' && !!nav && nav.onLine === false &&
         !isLocalAddress(this.addr);
};
/** Delay before the next attempt, given why the connection closed. */
KeepAlive.prototype.nextDelay = function (err, wasOpen) {
  var min = Math.max(0, this.s.minReconnectDelay), max = Math.max(min, this.s.maxReconnectDelay);
  if (err && err.isGotalkProtocolError && err.code !== ERR_TIMEOUT) return max;
  if (wasOpen) return Math.max(0, min - (Date.now() - this._openedAt));
  return Math.min(max, min * Math.pow(2, Math.max(0, this.failures - 1)));
};
KeepAlive.prototype._closed = function (err, wasOpen) {
  this.isConnected = false;
  if (!this.enabled) return;
  if (wasOpen) this.failures = 0; else this.failures++;
  if (this._offline()) { this.waitingForOnline = true; return; }
  var self = this;
  clearTimeout(this._timer);
  this._timer = setTimeout(function () { self._connect(); }, this.nextDelay(err, wasOpen));
};

/**
 * Connect and stay connected to `addr` (default: gotalk.defaultResponderAddress), reconnecting
 * with back-off until end() is called. Listen to 'open'/'close' for the connection state.
 */
Sock.prototype.openKeepAlive = function (addr) {
  if (this.keepalive) this.keepalive.disable();
  var url = resolveAddress(addr);
  this._webSocketImpl();
  this.keepalive = new KeepAlive(this, url);
  this.keepalive.enable();
  return this;
};

// ============================================================================================
// Module-level API

function splitHandlersAndOptions(v) {
  if (!v) return {handlers: undefined, options: undefined};
  if (v instanceof Handlers || typeof v.findRequestHandler === 'function') {
    return {handlers: v, options: undefined};
  }
  return {handlers: v.handlers, options: v};
}

/**
 * Open a connection (no reconnection). `open([addr], [onConnect(err, sock)], [handlersOrOptions])`
 * or `open([addr], options)`. Returns the Sock.
 */
function open(addr, onConnect, handlersOrOptions) {
  if (typeof addr === 'function') { handlersOrOptions = onConnect; onConnect = addr; addr = null; }
  if (addr && typeof addr === 'object') { handlersOrOptions = addr; onConnect = null; addr = null; }
  if (onConnect && typeof onConnect === 'object') { handlersOrOptions = onConnect; onConnect = null; }
  var ho = splitHandlersAndOptions(handlersOrOptions);
  return new Sock(ho.handlers, ho.options).open(addr, onConnect || undefined);
}

/**
 * Create a Sock with a persistent (keep-alive) connection to `addr`
 * (default: gotalk.defaultResponderAddress). `connection([addr], [handlersOrOptions])`.
 */
function connection(addr, handlersOrOptions) {
  if (addr && typeof addr === 'object') { handlersOrOptions = addr; addr = null; }
  var ho = splitHandlersAndOptions(handlersOrOptions);
  return new Sock(ho.handlers, ho.options).openKeepAlive(addr);
}

// Where the page says the responder is: window.gotalkResponderAt = {ws: "/path"}, or the
// directory of the <script> that loaded this file (http://h/gotalk/gotalk.js -> ws://h/gotalk/).
function findDefaultResponderAddress() {
  var at = root.gotalkResponderAt, loc = root.location;
  if (at && at.ws && loc && loc.host) {
    try { delete root.gotalkResponderAt; } catch (e) { root.gotalkResponderAt = undefined; }
    return resolveAddress(at.ws);
  }
  var doc = root.document, script = doc && doc.currentScript, src = script && script.src;
  var m = src && /^(https?):\/\/([^\/?#]+)([^?#]*)/i.exec(src);
  if (!m) return null;
  var path = m[3] || '/';
  return (m[1].toLowerCase() === 'https' ? 'wss' : 'ws') + '://' + m[2] +
         path.slice(0, path.lastIndexOf('/') + 1);
}

var defaultHandlers = new Handlers();

gotalk.version = '1.2.1+gotalk-rs';
gotalk.protocol = protocol;
gotalk.Buf = Buf;
gotalk.EventEmitter = EventEmitter;
gotalk.Handlers = Handlers;
gotalk.Sock = Sock;
gotalk.StreamRequest = StreamRequest;
gotalk.ErrAbnormal = protocolError(ERR_ABNORMAL);
gotalk.ErrUnsupported = protocolError(ERR_UNSUPPORTED);
gotalk.ErrInvalidMsg = protocolError(ERR_INVALID_MSG);
gotalk.ErrTimeout = protocolError(ERR_TIMEOUT);
gotalk.defaultHandlers = defaultHandlers;
gotalk.defaultResponderAddress = findDefaultResponderAddress();
gotalk.developmentMode = !!(root.location && /^(localhost|127\.0\.0\.1|\[::1\])$/.test(root.location.hostname));
/** WebSocket constructor used when a Sock has none of its own (default: globalThis.WebSocket) */
gotalk.WebSocket = null;
gotalk.open = open;
gotalk.connection = connection;
gotalk.handle = function (op, h) { gotalk.defaultHandlers.handleRequest(op, h); };
gotalk.handleRequest = gotalk.handle;
gotalk.handleBufferRequest = function (op, h) { gotalk.defaultHandlers.handleBufferRequest(op, h); };
gotalk.handleNotification = function (name, h) { gotalk.defaultHandlers.handleNotification(name, h); };
gotalk.handleBufferNotification = function (name, h) {
  gotalk.defaultHandlers.handleBufferNotification(name, h);
};
gotalk.handleStreamRequest = function (op, h) { gotalk.defaultHandlers.handleStreamRequest(op, h); };

return gotalk;
});
