'use strict';
// The TypeScript module generated from Rust services (#[gotalk::service(typescript)]) builds on
// gotalk.d.ts: the typed-web example's module, its page (checkJs) and test/service.test-d.ts
// (mistakes the types must catch) compile with tsc. tests/typescript.rs keeps the module current.
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { spawnSync } = require('node:child_process');

const root = path.join(__dirname, '..');
const tsc = path.join(root, 'node_modules', '.bin', process.platform === 'win32' ? 'tsc.cmd' : 'tsc');
const skip = !fs.existsSync(tsc) && 'typescript not installed (npm install)';

test('the generated service module, its page and the type test compile with tsc --noEmit', { skip }, () => {
  const r = spawnSync(tsc, ['-p', path.join(__dirname, 'tsconfig.service.json')], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stdout + r.stderr);
});

test('the typed-web example compiles on its own tsconfig', { skip }, () => {
  const dir = path.join(root, '..', 'examples', 'typed-web');
  const r = spawnSync(tsc, ['-p', path.join(dir, 'tsconfig.json')], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stdout + r.stderr);
});
