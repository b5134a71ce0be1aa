// CommonJS use of the installed sqlite-cdc package with better-sqlite3:
// another process (the sqlite3 shell, no extension) writes, Node consumes.
'use strict';
const assert = require('node:assert/strict');
const { spawnSync } = require('node:child_process');
const Database = require('better-sqlite3');
const cdc = require('sqlite-cdc');

const [shell, file] = process.argv.slice(2);
assert.match(cdc.getLoadablePath(), /node_modules\/sqlite-cdc\/cdc\.so$/);
const db = new Database(file, { timeout: 10000 });
cdc.load(db);
assert.throws(() => cdc.load({}), /needs a connection with loadExtension/);
db.prepare("SELECT cdc_setup('t')").get();
db.prepare("SELECT cdc_consumer_add('node')").get();

const r = spawnSync(shell, ['-batch', file,
  "INSERT INTO t(v) VALUES ('from-shell-1'); INSERT INTO t(v) VALUES ('from-shell-2')"]);
assert.equal(r.status, 0, String(r.stderr));
assert.equal(db.prepare("SELECT cdc_wait('node', 5000)").pluck().get(), 2);
const batch = JSON.parse(db.prepare("SELECT cdc_poll('node')").pluck().get());
assert.deepEqual(batch.map((e) => [e.op, e.after.v]), [['INSERT', 'from-shell-1'], ['INSERT', 'from-shell-2']]);
assert.equal(db.prepare('SELECT cdc_ack(?, ?)').pluck().get('node', batch.at(-1).id), batch.at(-1).id);
assert.equal(db.prepare("SELECT cdc_wait('node', 0)").pluck().get(), 0);
db.close();
console.log(`CommonJS: ${batch.length} changes from the shell consumed and acked`);
