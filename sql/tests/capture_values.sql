-- Capture through the real sqlite3 shell: values, identifiers, REPLACE
-- deletes, transactions; read back with cdc_changes (no ts: deterministic).
.mode list
.bail off
CREATE TABLE "odd ""name"""("index" INTEGER PRIMARY KEY, "select" TEXT UNIQUE, v, "ü");
SELECT cdc_setup('odd "name"');
INSERT INTO "odd ""name""" VALUES(1, 'a', 0.1 + 0.2, 'ü');
INSERT INTO "odd ""name""" VALUES(2, 'b', 1e-310, x'00FF');
INSERT INTO "odd ""name""" VALUES(3, 'c', 9e999, -9e999);
INSERT INTO "odd ""name""" VALUES(4, 'd', -9223372036854775808, 9223372036854775807);
INSERT INTO "odd ""name""" VALUES(5, x'CAFE', NULL, 'tab	"quote" \ ' || char(10) || char(0) || 'after-nul');
INSERT OR REPLACE INTO "odd ""name""" VALUES(6, 'a', 1.0, NULL);
UPDATE OR REPLACE "odd ""name""" SET "select" = 'b' WHERE "index" = 3;
BEGIN; DELETE FROM "odd ""name"""; ROLLBACK;
SAVEPOINT s; UPDATE "odd ""name""" SET v = 'gone'; ROLLBACK TO s; RELEASE s;
INSERT INTO "odd ""name""" VALUES(4, 'dup', 0, 0);
DELETE FROM "odd ""name""" WHERE "index" = 4;
SELECT id, tbl, op, before, after FROM cdc_changes;
SELECT cdc_teardown();
SELECT count(*) FROM sqlite_schema WHERE name LIKE '%cdc%';
