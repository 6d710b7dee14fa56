// @ts-check
// The typed-web page. It calls the server's Board service and implements the Page service the
// server calls, both through the module generated from the Rust definitions (service.ts; the
// server hands it out as /service.js). tsc checks this file against that module
// (gotalk/js/test/service.test.js), so a typo in an operation or a field fails there.
import { boardClient, handlePage, ServiceError } from './service.js';

/** @typedef {import('./service.js').Note} Note */
/** @typedef {import('./service.js').PostError} PostError */

const $ = (/** @type {string} */ id) => /** @type {HTMLElement} */ (document.getElementById(id));
const checking = new URLSearchParams(location.search).has('check');

/** @type {Note[]} */
const shown = [];
let asked = 0;

/** @param {HTMLElement} list @param {Note} note */
function add(list, note) {
  const li = document.createElement('li');
  li.textContent = `#${note.id} ${note.text}`;
  list.append(li);
}

// What the server may call on this page.
handlePage(gotalk, {
  confirm(question) {
    asked++;
    return checking || window.confirm(question.text);
  },
  show(note) {
    shown.push(note);
    add($('notes'), note);
  },
});

const sock = gotalk.connection();
const board = boardClient(sock);
const opened = new Promise((resolve) => sock.once('open', resolve));
sock.on('open', async () => {
  $('status').textContent = 'connected';
  $('notes').replaceChildren();
  for (const note of await board.list()) add($('notes'), note);
});
sock.on('close', () => { $('status').textContent = 'reconnecting…'; });

/** @param {unknown} err */
function describe(err) {
  if (err instanceof ServiceError) {
    const e = /** @type {PostError} */ (err.data);
    switch (e.kind) {
      case 'empty': return 'Write something first.';
      case 'too-long': return `At most ${e.max} characters.`;
      case 'not-confirmed': return 'Not posted.';
    }
  }
  return String(err);
}

$('post').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const input = /** @type {HTMLInputElement} */ ($('text'));
  $('error').textContent = '';
  try {
    await board.post({ text: input.value });
    input.value = '';
  } catch (err) {
    $('error').textContent = describe(err);
  }
});

$('search').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const query = /** @type {HTMLInputElement} */ ($('query')).value;
  $('found').replaceChildren();
  for await (const note of board.search(query)) add($('found'), note);
});

// ---- self-test (?check): every Board method, and the server's calls to this page

/** @param {unknown} cond @param {string} what */
function expect(cond, what) {
  if (!cond) throw new Error(what);
}

async function selfTest() {
  /** @type {string[]} */
  const lines = [];
  let ok = true;
  /** @param {string} name @param {() => Promise<void>} run */
  const step = async (name, run) => {
    try {
      await run();
      lines.push('ok: ' + name);
    } catch (err) {
      ok = false;
      lines.push('FAILED: ' + name + ': ' + (err instanceof Error ? err.message : String(err)));
    }
  };
  await opened;
  const text = 'typed hello ' + Date.now();
  await step('post: the server asks this page to confirm, then answers with the note', async () => {
    const note = await board.post({ text });
    expect(note.text === text && note.id >= 1, 'got ' + JSON.stringify(note));
    expect(asked === 1, `confirm asked ${asked} times`);
  });
  await step('show: the server tells this page about the note', async () => {
    for (let i = 0; i < 100 && !shown.some((n) => n.text === text); i++) {
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(shown.some((n) => n.text === text), 'no show notification');
  });
  await step('list: the note is there', async () => {
    const notes = await board.list();
    expect(notes.some((n) => n.text === text), JSON.stringify(notes));
  });
  await step('post: a typed error comes back as a ServiceError', async () => {
    try {
      await board.post({ text: '  ' });
    } catch (err) {
      expect(err instanceof ServiceError, 'not a ServiceError: ' + err);
      const e = /** @type {ServiceError<PostError>} */ (err);
      expect(e.data.kind === 'empty', JSON.stringify(e.data));
      return;
    }
    throw new Error('no error');
  });
  await step('search: results stream back one part each', async () => {
    /** @type {Note[]} */
    const found = [];
    for await (const note of board.search('typed hello')) found.push(note);
    expect(found.length >= 1 && found.every((n) => n.text.includes('typed hello')), JSON.stringify(found));
  });
  await step('shout: parts both ways', async () => {
    const out = [];
    for await (const line of board.shout(['a', 'déf'])) out.push(line);
    expect(out.join() === 'A,DÉF', out.join());
    const more = [];
    for await (const line of board.shout((async function* () { yield 'x'; yield 'yz'; })())) more.push(line);
    expect(more.join() === 'X,YZ', more.join());
  });
  board.report({ ok, lines });
  $('result').textContent = ok ? 'ok' : 'FAILED: ' + lines.filter((l) => l.startsWith('FAILED')).join('; ');
}

if (checking) selfTest();
