'use strict';
// gotalk.d.ts must match the runtime: the value exports it declares are exactly the module's
// exports (top level and gotalk.protocol), and test/types.test-d.ts type-checks against it.
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { spawnSync } = require('node:child_process');
const gotalk = require('../gotalk.js');

const root = path.join(__dirname, '..');
const dts = fs.readFileSync(path.join(root, 'gotalk.d.ts'), 'utf8');

// Names of runtime values (const/let/var/function/class/namespace) declared at brace depth
// `depth`, inside the block that starts at `start`.
function declaredValues(src, start, depth) {
  const names = new Set();
  let level = 0;
  for (const line of src.slice(start).split('\n')) {
    if (level === depth) {
      const m = /^\s*(?:const|let|var|function|class|namespace)\s+([A-Za-z_$][\w$]*)/.exec(line);
      if (m) names.add(m[1]);
    }
    for (const ch of line.replace(/\/\/.*$/, '')) {
      if (ch === '{') level++;
      else if (ch === '}') level--;
    }
    if (level < 0) break;
  }
  return [...names].sort();
}

test('gotalk.d.ts declares exactly the runtime exports', () => {
  const top = declaredValues(dts, dts.indexOf('declare namespace gotalk {'), 1);
  assert.deepEqual(top, Object.keys(gotalk).sort());
});

test('gotalk.d.ts declares exactly the runtime gotalk.protocol members', () => {
  const start = dts.indexOf('namespace protocol {');
  assert.ok(start > 0);
  const names = declaredValues(dts, start, 1);
  assert.deepEqual(names, Object.keys(gotalk.protocol).sort());
  // literal constants agree with the runtime values
  for (const m of dts.slice(start).matchAll(/const (\w+): (0x[0-9a-f]+|\d+);/g)) {
    assert.equal(gotalk.protocol[m[1]], Number(m[2]), m[1]);
  }
});

test('Sock methods declared in gotalk.d.ts exist at runtime', () => {
  const block = dts.slice(dts.indexOf('interface Sock extends'), dts.indexOf('const Sock:'));
  const methods = new Set([...block.matchAll(/^\s+(\w+)(?:<[^>]*>)?\(/gm)].map((m) => m[1]));
  assert.ok(methods.size > 15);
  for (const name of methods) assert.equal(typeof gotalk.Sock.prototype[name], 'function', name);
  const hblock = dts.slice(dts.indexOf('interface Handlers {'), dts.indexOf('const Handlers:'));
  for (const m of hblock.matchAll(/^\s+(\w+)(?:<[^>]*>)?\(/gm)) {
    assert.equal(typeof gotalk.Handlers.prototype[m[1]], 'function', m[1]);
  }
});

const tsc = path.join(root, 'node_modules', '.bin', process.platform === 'win32' ? 'tsc.cmd' : 'tsc');
test('test/types.test-d.ts compiles with tsc --noEmit', { skip: !fs.existsSync(tsc) && 'typescript not installed (npm install)' }, () => {
  const r = spawnSync(tsc, ['-p', path.join(__dirname, 'tsconfig.json')], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stdout + r.stderr);
});
