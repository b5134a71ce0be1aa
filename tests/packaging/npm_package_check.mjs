// ES module use of the installed sqlite-cdc package (named and default exports).
import assert from 'node:assert/strict';
import Database from 'better-sqlite3';
import cdcDefault, { getLoadablePath, load } from 'sqlite-cdc';

assert.equal(getLoadablePath(), cdcDefault.getLoadablePath());
const db = new Database('app.db');
load(db);
const version = db.prepare('SELECT cdc_version()').pluck().get();
db.prepare("INSERT INTO t(v) VALUES ('from-esm')").run();
const batch = JSON.parse(db.prepare("SELECT cdc_poll('node')").pluck().get());
assert.deepEqual(batch.map((e) => e.after.v), ['from-esm']);
db.prepare('SELECT cdc_ack(?, ?)').get('node', batch[0].id);
db.close();
console.log(`ESM: cdc ${version} loaded from ${getLoadablePath()}, 1 change consumed`);
