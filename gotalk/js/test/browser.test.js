'use strict';
// Loads gotalk.js the way a <script> tag does (no module/require) in a fresh VM context.
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const vm = require('node:vm');
const { FakeWebSocket, Peer } = require('../test-support/helpers.js');

const source = fs.readFileSync(path.join(__dirname, '..', 'gotalk.js'), 'utf8');

function loadAsScript(src, extra = {}) {
  const url = new URL(src);
  const window = {
    document: { currentScript: { src } },
    location: { protocol: url.protocol, host: url.host, hostname: url.hostname },
    TextEncoder, TextDecoder, Uint8Array, ArrayBuffer, Promise, setTimeout, clearTimeout, queueMicrotask,
    ...extra,
  };
  window.window = window;
  window.globalThis = window;
  vm.createContext(window);
  vm.runInContext(source, window, { filename: 'gotalk.js' });
  return window;
}

test('as a plain script it defines window.gotalk', () => {
  const w = loadAsScript('http://example.com:8080/gotalk/gotalk.js');
  assert.equal(typeof w.gotalk, 'object');
  assert.equal(typeof w.gotalk.connection, 'function');
  assert.equal(typeof w.gotalk.Sock, 'function');
});

test('defaultResponderAddress comes from the script URL (http -> ws, https -> wss)', () => {
  assert.equal(loadAsScript('http://example.com:8080/gotalk/gotalk.js').gotalk.defaultResponderAddress,
               'ws://example.com:8080/gotalk/');
  assert.equal(loadAsScript('https://example.com/api/talk/gotalk.js?v=3').gotalk.defaultResponderAddress,
               'wss://example.com/api/talk/');
  assert.equal(loadAsScript('http://localhost:1234/gotalk.js').gotalk.developmentMode, true);
  // the reference server's announcement is honoured too
  const w = loadAsScript('http://h:1/static/gotalk.js', { gotalkResponderAt: { ws: '/ws/' } });
  assert.equal(w.gotalk.defaultResponderAddress, 'ws://h:1/ws/');
});

test('connection() with no arguments connects to the default address using window.WebSocket', () => {
  FakeWebSocket.reset();
  const w = loadAsScript('https://example.com/gotalk/gotalk.js', { WebSocket: FakeWebSocket });
  const s = w.gotalk.connection();
  assert.equal(FakeWebSocket.instances.length, 1);
  assert.equal(FakeWebSocket.instances[0].url, 'wss://example.com/gotalk/');
  new Peer(FakeWebSocket.instances[0]);
  assert.equal(s.address(), 'wss://example.com/gotalk/');
  // relative addresses resolve against the page location
  w.gotalk.open('/other/', () => {});
  assert.equal(FakeWebSocket.instances[1].url, 'wss://example.com/other/');
  s.end();
});
