// node_client_test.js — sqlite-cdc from Node.js through better-sqlite3 (built
// from source by tools/fetch_better_sqlite3.sh; it bundles its own SQLite).
//
//   CDC_EXTENSION=build/cdc BETTER_SQLITE3=build/node/node_modules/better-sqlite3 \
//     node --test tests/node_client_test.js
//
// Exits 77 (ctest: skipped) when better-sqlite3 is not built here.
'use strict';
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawnSync } = require('node:child_process');

const modDir = process.env.BETTER_SQLITE3;
if (!modDir || !fs.existsSync(path.join(modDir, 'build/Release/better_sqlite3.node'))) {
  console.log('better-sqlite3 is not built here (make test-node builds it): skipped');
  process.exit(77);
}
const test = require('node:test');
const assert = require('node:assert/strict');
const Database = require(path.resolve(modDir));
const EXT = process.env.CDC_EXTENSION;

function open(file, load = true) {
  const db = new Database(file, { timeout: 30000 });
  if (load) db.loadExtension(EXT);
  return db;
}

test('load, capture, poll and ack from Node', (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cdcnode.'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'app.db');
  const db = open(file);
  db.pragma('journal_mode = WAL');
  db.exec("CREATE TABLE users(id INTEGER PRIMARY KEY, email TEXT, score REAL, avatar BLOB)");
  assert.equal(db.prepare("SELECT cdc_setup('users')").pluck().get(), 1);
  assert.equal(db.prepare("SELECT cdc_consumer_add('node')").pluck().get(), 0);

  // A writer connection that never loaded the extension is captured too.
  const w = open(file, false);
  const ins = w.prepare('INSERT INTO users VALUES(?, ?, ?, ?)');
  w.transaction(() => {
    ins.run(1, 'a@example.com', 0.1 + 0.2, Buffer.from([0, 255]));
    ins.run(2, 'b@example.com', Infinity, null);
  })();
  w.prepare("UPDATE users SET email = 'c@example.com' WHERE id = 2").run();
  w.prepare('DELETE FROM users WHERE id = 1').run();
  w.close();

  const poll = db.prepare('SELECT cdc_poll(?, ?)').pluck();
  const events = JSON.parse(poll.get('node', 100));
  assert.deepEqual(events.map((e) => e.op), ['INSERT', 'INSERT', 'UPDATE', 'DELETE']);
  assert.equal(events[0].after.score, 0.1 + 0.2);  // the identical double
  assert.equal(events[0].after.avatar.$blob, '00FF');
  assert.equal(events[1].after.score, Infinity);  // 9e999
  assert.deepEqual(events[2].before, { id: 2, email: 'b@example.com', score: Infinity, avatar: null });
  assert.equal(events[2].after.email, 'c@example.com');
  assert.equal(events[3].after, null);

  const ack = db.prepare('SELECT cdc_ack(?, ?)').pluck();
  assert.equal(ack.get('node', events[1].id), events[1].id);
  assert.deepEqual(JSON.parse(poll.get('node', 100)).map((e) => e.id), [events[2].id, events[3].id]);
  ack.get('node', events[3].id);
  assert.deepEqual(JSON.parse(poll.get('node', 100)), []);

  // The virtual table, with a bound parameter.
  db.prepare("INSERT INTO users(id, email) VALUES(3, 'd@example.com')").run();
  const rows = db.prepare("SELECT op, tbl, after ->> '$.email' AS email FROM cdc_changes(?)").all('node');
  assert.deepEqual(rows, [{ op: 'INSERT', tbl: 'users', email: 'd@example.com' }]);
  assert.throws(() => poll.get('nobody', 1), /cdc_poll/);
  db.close();
});

test('cdc_wait returns when another process commits', (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cdcnode.'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'app.db');
  const db = open(file);
  db.pragma('journal_mode = WAL');
  db.exec("CREATE TABLE t(x); SELECT cdc_setup('t'); SELECT cdc_consumer_add('node', 'latest');");
  assert.equal(db.prepare("SELECT cdc_wait('node', 10)").pluck().get(), 0);
  // Another Node process commits one row; this one is blocked in cdc_wait.
  const child = require('node:child_process').spawn(process.execPath, ['-e', `
    setTimeout(() => {
      const D = require(${JSON.stringify(path.resolve(modDir))});
      new D(${JSON.stringify(file)}, { timeout: 30000 }).prepare('INSERT INTO t VALUES(42)').run();
    }, 200);`]);
  const pending = db.prepare("SELECT cdc_wait('node', 60000)").pluck().get();
  assert.equal(pending, 1);
  const events = JSON.parse(db.prepare("SELECT cdc_poll('node')").pluck().get());
  assert.deepEqual(events.map((e) => e.after), [{ x: 42 }]);
  child.kill();
  db.close();
});

test('push delivery: cdc_serve in a worker thread while the main thread writes', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cdcnode.'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'app.db');
  const db = open(file);
  db.pragma('journal_mode = WAL');
  db.exec("CREATE TABLE t(x); SELECT cdc_setup('t'); SELECT cdc_consumer_add('node');");
  // cdc_listen takes no JavaScript function (a background thread would call
  // into the connection); cdc_serve runs it on the caller's thread.
  db.function('on_batch', () => 1);
  assert.throws(() => db.prepare("SELECT cdc_listen('node', 'on_batch')").get(), /cdc_serve/);
  // The recipe of docs/recipes.md: a worker with a connection of its own blocks in
  // cdc_serve and posts each batch to the main thread.
  const { Worker } = require('node:worker_threads');
  const worker = new Worker(`
    const { parentPort, workerData } = require('node:worker_threads');
    const Database = require(workerData.mod);
    const db = new Database(workerData.file, { timeout: 30000 });
    db.loadExtension(workerData.ext);
    db.function('on_batch', (batch) => { parentPort.postMessage(batch); return 1; });
    const n = db.prepare("SELECT cdc_serve('node', 'on_batch')").pluck().get();  // until cdc_unlisten
    parentPort.postMessage({ done: n });
  `, { eval: true, workerData: { mod: path.resolve(modDir), file, ext: EXT } });
  const ids = [];
  let done = null;
  worker.on('message', (m) => { if (typeof m === 'string') ids.push(...JSON.parse(m).map((e) => e.id)); else done = m.done; });
  for (let i = 1; i <= 200; i++) db.prepare('INSERT INTO t VALUES(?)').run(i);
  const until = Date.now() + 30000;
  while (ids.length < 200 && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
  assert.equal(db.prepare("SELECT cdc_unlisten('node')").pluck().get(), 1);
  while (done === null && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
  assert.deepEqual(ids, Array.from({ length: 200 }, (_, k) => k + 1));
  assert.equal(done, 200);
  await worker.terminate();
  db.close();
});

test('a write from the plain sqlite3 shell reaches a Node consumer', (t) => {
  const shell = process.env.SQLITE3_SHELL;
  if (!shell) { t.skip('SQLITE3_SHELL not set'); return; }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cdcnode.'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'app.db');
  const db = open(file);
  db.exec("CREATE TABLE t(x); SELECT cdc_setup('t'); SELECT cdc_consumer_add('shell');");
  db.close();
  // A plain shell (no extension) writes; a Node connection reads the change.
  const r = spawnSync(shell, ['-batch', file, 'INSERT INTO t VALUES(7)'], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const db2 = open(file);
  const ev = JSON.parse(db2.prepare("SELECT cdc_poll('shell')").pluck().get());
  assert.deepEqual(ev.map((e) => [e.op, e.after]), [['INSERT', { x: 7 }]]);
  db2.close();
});
