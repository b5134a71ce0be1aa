// orm_migration_test.js — a real ORM's migrations on a captured table
// (docs/schema-changes.md): knex, through its own better-sqlite3 client,
// alters a column, which knex does on SQLite by rebuilding the table (copy
// into a new table, drop, rename). Meanwhile a writer process that never
// loaded the extension keeps inserting, and a consumer polls. Afterwards the
// consumer's replica, built from events alone, equals the table, the stream
// holds exactly one resync, and the rows knex copied were not also logged as
// INSERTs.
//
//   CDC_EXTENSION=build/cdc NODE_DEPS=build/node CDC_TEST_WRITER=build/tests/cdc_test_writer \
//     node tests/orm_migration_test.js
//
// Exits 77 (ctest: skipped) when knex / better-sqlite3 are not installed here
// (make test-node installs them).
'use strict';
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawn } = require('node:child_process');

const deps = process.env.NODE_DEPS;
const mods = deps && path.join(path.resolve(deps), 'node_modules');
if (!mods || !fs.existsSync(path.join(mods, 'knex')) ||
    !fs.existsSync(path.join(mods, 'better-sqlite3/build/Release/better_sqlite3.node'))) {
  console.log('knex and better-sqlite3 are not installed here (make test-node installs them): skipped');
  process.exit(77);
}
const test = require('node:test');
const assert = require('node:assert/strict');
const Database = require(path.join(mods, 'better-sqlite3'));
const Knex = require(path.join(mods, 'knex'));
const EXT = process.env.CDC_EXTENSION;
const WRITER = process.env.CDC_TEST_WRITER;

function apply(replica, markers, e) {
  if (e.op === 'BOOTSTRAP' || e.op === 'DROP') {
    replica.delete(e.table);
    markers.push(`${e.op} ${e.table} (${e.reason || ''})`);
    if (e.op === 'BOOTSTRAP') replica.set(e.table, new Map());
    return;
  }
  if (!replica.has(e.table)) replica.set(e.table, new Map());
  const rows = replica.get(e.table);
  if (e.op === 'DELETE') rows.delete(e.before.id);
  else rows.set(e.after.id, JSON.stringify(e.after));
}

test('knex alter() rebuilds a captured table: one resync, replica equals table', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cdcorm.'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'app.db');
  const knex = Knex({ client: 'better-sqlite3', connection: { filename: file }, useNullAsDefault: true });
  t.after(() => knex.destroy());

  await knex.schema.createTable('users', (tb) => {
    tb.increments('id');
    tb.string('email');
    tb.integer('score');
  });
  const db = new Database(file, { timeout: 30000 });
  db.loadExtension(EXT);
  db.pragma('journal_mode = WAL');
  db.prepare("SELECT cdc_setup('users'), cdc_consumer_add('replica')").get();
  await knex('users').insert(Array.from({ length: 50 }, (_, i) => ({ email: `u${i}@x`, score: i })));

  const replica = new Map();
  const markers = [];
  const events = [];
  const poll = db.prepare("SELECT cdc_poll('replica', 500)").pluck();
  const ack = db.prepare("SELECT cdc_ack('replica', ?)").pluck();
  const drain = () => {
    for (;;) {
      const batch = JSON.parse(poll.get());
      if (batch.length === 0) return;
      for (const e of batch) { apply(replica, markers, e); events.push(e); }
      ack.get(batch[batch.length - 1].id);
    }
  };

  const writer = spawn(WRITER, [file, '300', '2'], {
    env: { ...process.env, CDC_WRITER_SQL: "INSERT INTO users(email, score) VALUES('w' || ?1 || '@x', ?1)" },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const exited = new Promise((resolve) => writer.on('exit', (code) => resolve(code)));
  while (db.prepare('SELECT count(*) FROM users').pluck().get() < 120) {
    drain();
    await new Promise((r) => setTimeout(r, 5));
  }
  // knex rebuilds the table to change a column's type and nullability.
  await knex.schema.alterTable('users', (tb) => {
    tb.string('email', 200).notNullable().defaultTo('').alter();
  });
  const ddl = db.prepare("SELECT sql FROM sqlite_schema WHERE name = 'users'").pluck().get();
  assert.match(ddl, /not null/i, 'knex altered the column');
  let code = null;
  exited.then((c) => { code = c; });
  while (code === null) {
    drain();
    await new Promise((r) => setTimeout(r, 5));
  }
  assert.equal(code, 0, 'the writer process kept writing through the migration');
  drain();
  drain();

  assert.deepEqual(markers, ['BOOTSTRAP users (triggers missing)']);
  const table = new Map(db.prepare(
    "SELECT id, json_object('id', id, 'email', email, 'score', score) AS j FROM users").raw().all());
  assert.equal(table.size, 350);
  assert.deepEqual(replica.get('users'), table);
  // The rows knex copied into the rebuilt table came only with the resync.
  const m = events.findIndex((e) => e.op === 'BOOTSTRAP');
  const before = events.slice(0, m).filter((e) => e.op === 'INSERT').map((e) => e.after.id);
  assert.equal(new Set(before).size, before.length, 'a row was logged twice before the resync');
  assert.equal(db.prepare("SELECT json_extract(cdc_status(), '$.tables[0].state')").pluck().get(), 'intact');
  db.close();
});
