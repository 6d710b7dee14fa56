'use strict';
// Shared by the browser end-to-end tests: start a Rust server (an example binary, or the
// `gotalk serve` demo, built by scripts/test.d/browser.sh), launch headless Chromium with a
// fresh profile, open pages.
const { execFileSync, spawn } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { chromium } = require('playwright-core');

const ROOT = path.resolve(__dirname, '..', '..', '..');
const BUILD = 'cargo build --release --workspace --bins --examples --benches (as scripts/test.d/browser.sh does)';

/**
 * Where cargo puts what it builds: GOTALK_TARGET_DIR when scripts/test exported it, else what
 * `cargo metadata` reports (CARGO_TARGET_DIR, build.target-dir in a config file, or ./target).
 */
function targetDir() {
  if (process.env.GOTALK_TARGET_DIR) return process.env.GOTALK_TARGET_DIR;
  const meta = execFileSync('cargo', ['metadata', '--format-version', '1', '--no-deps'], {
    cwd: ROOT, encoding: 'utf8', maxBuffer: 64 << 20,
  });
  return JSON.parse(meta).target_directory;
}

let target;
const releaseDir = () => path.join(target ??= targetDir(), 'release');
const binDir = () => process.env.GOTALK_E2E_BIN_DIR || path.join(releaseDir(), 'examples');
const gotalkBin = () => process.env.GOTALK_BIN || path.join(releaseDir(), 'gotalk');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];

/**
 * Starts example `name` with `args` and resolves once it prints its URL
 * ("http://127.0.0.1:PORT/"). Returns {url, port, proc, stop()}.
 */
function startServer(name, args = ['--addr', '127.0.0.1:0']) {
  const bin = path.join(binDir(), name);
  if (!fs.existsSync(bin)) throw new Error(`${bin} is missing: ${BUILD}`);
  return startProcess(name, bin, args);
}

/**
 * Starts the demo, `gotalk serve ARGS` (by default on a free port, without TCP), like
 * startServer. Its log (stderr) so far is in `log()`.
 */
function startDemo(args = ['--http', '127.0.0.1:0', '--tcp', 'off']) {
  const bin = gotalkBin();
  if (!fs.existsSync(bin)) throw new Error(`${bin} is missing: ${BUILD}`);
  return startProcess('gotalk serve', bin, ['serve', ...args]);
}

function startProcess(name, bin, args) {
  const proc = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let errText = '';
  proc.stderr.on('data', (d) => { errText += d; });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`${name} printed no URL within 20 s; stderr: ${errText}`));
    }, 20000);
    proc.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${name} exited (${code}) before listening; stderr: ${errText}`));
    });
    proc.stdout.on('data', (d) => {
      out += d;
      const m = /http:\/\/127\.0\.0\.1:(\d+)\//.exec(out);
      if (!m) return;
      clearTimeout(timer);
      proc.removeAllListeners('exit');
      resolve({
        url: m[0],
        port: Number(m[1]),
        proc,
        log: () => errText,
        stop() {
          return new Promise((res) => {
            if (proc.exitCode !== null || proc.signalCode !== null) return res();
            proc.once('exit', () => res());
            proc.kill('SIGKILL');
          });
        },
      });
    });
  });
}

/** Headless Chromium with a fresh user-data-dir; close() removes the profile. */
async function launchBrowser() {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'gotalk-e2e-profile-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
  });
  return {
    context,
    async newPage(url) {
      const page = await context.newPage();
      page.on('pageerror', (err) => console.error('page error:', err.message));
      if (url) {
        await page.goto(url);
        await page.waitForFunction(() => typeof window.gotalk === 'object');
      }
      return page;
    },
    async close() {
      await context.close();
      fs.rmSync(profile, { recursive: true, force: true });
    },
  };
}

module.exports = { startServer, startDemo, launchBrowser, ROOT };
