'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const { gotalk, te, td } = require('../test-support/helpers.js');
const { protocol } = gotalk;
const { Decoder, encodeHeader, encodeMsg } = protocol;

const str = (b) => td.decode(b);

test('constants match the protocol', () => {
  assert.equal(protocol.Version, 1);
  assert.equal(protocol.MsgTypeSingleReq, 'r'.charCodeAt(0));
  assert.equal(protocol.MsgTypeStreamReq, 's'.charCodeAt(0));
  assert.equal(protocol.MsgTypeStreamReqPart, 'p'.charCodeAt(0));
  assert.equal(protocol.MsgTypeSingleRes, 'R'.charCodeAt(0));
  assert.equal(protocol.MsgTypeStreamRes, 'S'.charCodeAt(0));
  assert.equal(protocol.MsgTypeErrorRes, 'E'.charCodeAt(0));
  assert.equal(protocol.MsgTypeRetryRes, 'e'.charCodeAt(0));
  assert.equal(protocol.MsgTypeNotification, 'n'.charCodeAt(0));
  assert.equal(protocol.MsgTypeHeartbeat, 'h'.charCodeAt(0));
  assert.equal(protocol.MsgTypeProtocolError, 'f'.charCodeAt(0));
  assert.deepEqual([protocol.ErrorAbnormal, protocol.ErrorUnsupported, protocol.ErrorInvalidMsg, protocol.ErrorTimeout], [0, 1, 2, 3]);
  assert.equal(protocol.HeartbeatMsgMaxLoad, 0xffff);
});

// Every message type, as in the protocol documentation.
const cases = [
  [{ t: 'r', id: '0001', name: 'echo' }, '{"message":"Hello World"}', 'r0001004echo00000019{"message":"Hello World"}'],
  [{ t: 's', id: '0001', name: 'echo' }, '{"message":', 's0001004echo0000000b{"message":'],
  [{ t: 'p', id: '0001' }, '"Hello World"}', 'p00010000000e"Hello World"}'],
  [{ t: 'p', id: '0001' }, '', 'p000100000000'],
  [{ t: 'R', id: '0001' }, '{"message":"Hello World"}', 'R000100000019{"message":"Hello World"}'],
  [{ t: 'S', id: '0001' }, '{"message":', 'S00010000000b{"message":'],
  [{ t: 'S', id: '0001' }, '', 'S000100000000'],
  [{ t: 'E', id: '0001' }, 'unknown operation "echo"', 'E000100000018unknown operation "echo"'],
  [{ t: 'e', id: '0001', wait: 5000 }, '"request rate limit"', 'e00010000138800000014"request rate limit"'],
  [{ t: 'n', name: 'ping' }, '{"n":1}', 'n004ping00000007{"n":1}'],
  [{ t: 'h', load: 0, time: 0x6b069c5e }, null, 'h00006b069c5e'],
  [{ t: 'h', load: 0xffff, time: 1 }, null, 'hffff00000001'],
  [{ t: 'f', code: 1 }, null, 'f00000001'],
  [{ t: 'f', code: 3 }, null, 'f00000003'],
];

test('encodeMsg encodes every message type', () => {
  for (const [m, payload, wire] of cases) {
    assert.equal(str(encodeMsg(m, payload)), wire, wire);
  }
});

test('encodeHeader: numeric types, Uint8Array ids, UTF-8 names, limits', () => {
  assert.equal(str(encodeHeader({ t: protocol.MsgTypeSingleRes, id: '000a', size: 0xffffffff })), 'R000affffffff');
  const h = encodeHeader({ t: 'R', id: new Uint8Array([0, 1, 2, 3]), size: 6 });
  assert.deepEqual(Array.from(h.subarray(0, 5)), [0x52, 0, 1, 2, 3]);
  assert.equal(str(encodeHeader({ t: 'n', name: 'é✓', size: 0 })), 'n005é✓00000000');
  assert.throws(() => encodeHeader({ t: 'x' }), TypeError);
  assert.throws(() => encodeHeader({ t: 'R', id: '01', size: 0 }), TypeError);
  assert.throws(() => encodeHeader({ t: 'R', id: '0001', size: 2 ** 32 }), RangeError);
  assert.throws(() => encodeHeader({ t: 'n', name: 'x'.repeat(4096) }), RangeError);
  const now = Math.floor(Date.now() / 1000);
  const hb = str(encodeHeader({ t: 'h', load: 1 }));
  assert.match(hb, /^h0001[0-9a-f]{8}$/);
  assert.ok(Math.abs(parseInt(hb.slice(5), 16) - now) <= 1);
});

test('Decoder decodes every message type with its fields', () => {
  const d = new Decoder();
  const msgs = d.push(cases.map((c) => c[2]).join(''));
  assert.equal(msgs.length, cases.length);
  msgs.forEach((m, i) => {
    const [want, payload] = cases[i];
    assert.equal(String.fromCharCode(m.t), want.t);
    if (want.id) assert.equal(m.id, want.id);
    if (want.name) assert.equal(m.name, want.name);
    if (want.wait) assert.equal(m.wait, want.wait);
    if ('load' in want) { assert.equal(m.load, want.load); assert.equal(m.time, want.time); }
    if ('code' in want) assert.equal(m.code, want.code);
    if (payload !== null) {
      assert.ok(m.payload instanceof Uint8Array);
      assert.equal(m.payload.toString(), payload); // Buf.toString decodes UTF-8
      assert.equal(m.size, te.encode(payload).length);
    }
  });
});

test('Decoder: version first, upper-case hex accepted, binary ids kept as 4 chars', () => {
  const d = new Decoder({ readVersion: true });
  const bytes = new Uint8Array([...te.encode('01R'), 0, 0, 0, 0, ...te.encode('0000000Aabcdefghij')]);
  const [m] = d.push(bytes);
  assert.equal(d.version, 1);
  assert.equal(m.id, '\0\0\0\0');
  assert.equal(m.size, 10);
  assert.equal(m.payload.toString(), 'abcdefghij');
  // the id round-trips to the same bytes
  assert.deepEqual(Array.from(encodeHeader({ t: 'R', id: m.id, size: 0 }).subarray(1, 5)), [0, 0, 0, 0]);
});

function stream() {
  const parts = ['01'];
  for (const [m, payload] of cases) parts.push(encodeMsg(m, payload));
  parts.push(encodeMsg({ t: 'r', id: 'zz!0', name: 'ünïcødé-op' }, new Uint8Array(300).map((_, i) => i)));
  parts.push(encodeMsg({ t: 'R', id: '\x00\x01\x02\xff' }, ''));
  return Uint8Array.from(parts.flatMap((p) => Array.from(typeof p === 'string' ? te.encode(p) : p)));
}

function summarize(msgs) {
  return msgs.map((m) => [m.t, m.id, m.name, m.wait, m.size, m.load, m.time, m.code, m.payload && Array.from(m.payload)]);
}

test('Decoder is incremental: every split point gives the same messages', () => {
  const all = stream();
  const want = summarize(new Decoder({ readVersion: true }).push(all));
  assert.equal(want.length, cases.length + 2);
  for (let i = 0; i <= all.length; i++) {
    const d = new Decoder({ readVersion: true });
    const got = [...d.push(all.subarray(0, i)), ...d.push(all.subarray(i))];
    assert.deepEqual(summarize(got), want, 'split at ' + i);
  }
});

test('Decoder is incremental: one byte at a time and random chunks', () => {
  const all = stream();
  const want = summarize(new Decoder({ readVersion: true }).push(all));
  let d = new Decoder({ readVersion: true });
  let got = [];
  for (const b of all) got.push(...d.push(new Uint8Array([b])));
  assert.deepEqual(summarize(got), want);
  let seed = 42;
  const rand = (n) => { seed = (seed * 1103515245 + 12345) % 2147483648; return seed % n; };
  for (let round = 0; round < 50; round++) {
    d = new Decoder({ readVersion: true });
    got = [];
    for (let i = 0; i < all.length;) {
      const n = 1 + rand(40);
      // alternate ArrayBuffer and Uint8Array chunks
      const chunk = all.slice(i, i + n);
      got.push(...d.push(round % 2 ? chunk.buffer : chunk));
      i += n;
    }
    assert.deepEqual(summarize(got), want);
  }
});

test('Decoder rejects invalid input with protocol errors', () => {
  const err = (fn, code) => assert.throws(fn, (e) => e.isGotalkProtocolError === true && e.code === code);
  err(() => new Decoder({ readVersion: true }).push('02'), protocol.ErrorUnsupported);
  err(() => new Decoder({ readVersion: true }).push('zz'), protocol.ErrorUnsupported);
  err(() => new Decoder().push('x0001'), protocol.ErrorInvalidMsg);
  err(() => new Decoder().push('R0001000000zz'), protocol.ErrorInvalidMsg);
  err(() => new Decoder().push('r00010g4echo'), protocol.ErrorInvalidMsg);
  // an oversized payload is refused from the header alone, without waiting for (or allocating) it
  err(() => new Decoder().push('R0001ffffffff'), protocol.ErrorInvalidMsg);
  err(() => new Decoder({ maxPayloadSize: 4 }).push('R000100000005'), protocol.ErrorInvalidMsg);
  assert.equal(new Decoder({ maxPayloadSize: 5 }).push('R000100000005hello').length, 1);
  // messages decoded before the error are handed over on the error
  try {
    new Decoder().push('R000100000000garbage');
    assert.fail('no error');
  } catch (e) {
    assert.equal(e.messages.length, 1);
    assert.equal(e.messages[0].id, '0001');
  }
});

test('protocol.binary compatibility helpers', () => {
  const b = protocol.binary;
  assert.equal(str(b.versionBuf), '01');
  assert.equal(b.parseVersion(te.encode('01')), 1);
  assert.equal(str(b.makeFixnum(255, 4)), '00ff');
  assert.equal(str(b.makeMsg(protocol.MsgTypeSingleReq, '0000', 'echo', 0, 3)), 'r0000004echo00000003');
  assert.equal(str(b.makeMsg(protocol.MsgTypeProtocolError, null, null, 0, 2)), 'f00000002');
  assert.equal(str(b.makeHeartbeatMsg(7, 16)), 'h000700000010');
  const m = b.parseMsg(te.encode('e000a0000138800000003'));
  assert.deepEqual([m.t, m.id, m.wait, m.size], [protocol.MsgTypeRetryRes, '000a', 5000, 3]);
  assert.equal(b.parseMsg(te.encode('e000a00')), null);
});

test('Buf is a Uint8Array that prints as UTF-8', () => {
  const b = gotalk.Buf.fromString('héllo');
  assert.ok(b instanceof Uint8Array);
  assert.ok(gotalk.Buf.isBuf(b));
  assert.equal(String(b), 'héllo');
  assert.equal(b.length, 6);
});

test('Decoder skipOversized: the message comes at its header, its payload is skipped in any split', () => {
  const wire = 'R00010000000a' + '0123456789' + 'R000200000002ok';
  for (let cut = 0; cut <= wire.length; cut++) {
    const d = new Decoder({ maxPayloadSize: 5, skipOversized: true });
    const got = [...d.push(wire.slice(0, cut)), ...d.push(wire.slice(cut))];
    assert.deepEqual(got.map((m) => [m.id, m.size, m.oversized === true, m.payload && m.payload.toString()]),
                     [['0001', 10, true, null], ['0002', 2, false, 'ok']], 'cut at ' + cut);
  }
  // announced at the header already, before any of the payload
  assert.equal(new Decoder({ maxPayloadSize: 5, skipOversized: true }).push('R0001ffffffff')[0].oversized, true);
});

test('Decoder feed: one message at a time, and false stops at once', () => {
  const d = new Decoder();
  const seen = [];
  d.feed('n001a00000000n001b00000000n001c00000000', (m) => { seen.push(m.name); return m.name !== 'b'; });
  assert.deepEqual(seen, ['a', 'b']);
  // a payload split over chunks is kept only as large as what arrived
  const e = new Decoder();
  e.feed('R000100100000' + 'x', () => assert.fail('not complete'));
  assert.ok(e._body.length <= 64 * 1024, 'allocated ' + e._body.length + ' for 1 byte of a 1 MiB payload');
});
