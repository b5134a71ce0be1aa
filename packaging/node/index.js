'use strict';
// sqlite-cdc: where the bundled cdc extension is, and loading it into a
// connection (better-sqlite3's db.loadExtension, or any object with one).
const fs = require('fs');
const path = require('path');

function getLoadablePath() {
  const file = path.join(__dirname, 'cdc.so');
  if (!fs.existsSync(file)) {
    throw new Error(`sqlite-cdc: ${file} is missing (this package holds a build for Linux ${require('./package.json').cpu.join(', ')})`);
  }
  return file;
}

function load(db) {
  if (!db || typeof db.loadExtension !== 'function') {
    throw new TypeError('sqlite-cdc: load(db) needs a connection with loadExtension() (better-sqlite3 Database)');
  }
  db.loadExtension(getLoadablePath());
}

module.exports = { getLoadablePath, load };
