-- sqlite-cdc demo: capture changes to a table and deliver them to a consumer.
.headers on
.mode box --wrap 100
PRAGMA journal_mode = WAL;
CREATE TABLE orders(id INTEGER PRIMARY KEY, customer TEXT, total REAL, note BLOB);
INSERT INTO orders(customer, total) VALUES ('existing', 1.5);
SELECT cdc_version() AS version;
-- 1. Capture: plain-SQL triggers, so writers that never loaded the extension are captured too.
SELECT cdc_setup('orders') AS setup;
SELECT cdc_consumer_add('search-index') AS position;
-- 2. Bootstrap the row that existed before capture: a BOOTSTRAP marker, then one INSERT per row.
SELECT cdc_bootstrap('orders') AS bootstrapped;
-- 3. Writes, in one transaction and outside it.
BEGIN;
INSERT INTO orders(customer, total, note) VALUES ('ada', 9.5, x'CAFE');
INSERT INTO orders(customer, total) VALUES ('grace', 0.1 + 0.2);
COMMIT;
UPDATE orders SET total = 12.0 WHERE customer = 'ada';
DELETE FROM orders WHERE customer = 'grace';
-- A write from another process that never loaded the extension (the plain sqlite3 shell).
.shell sqlite3 "$DEMO_DB" "INSERT INTO orders(customer, total) VALUES ('plain-shell', 7)"
-- A rolled-back write leaves no event.
BEGIN; INSERT INTO orders(customer) VALUES ('ghost'); ROLLBACK;
-- 4. Delivery: the consumer's pending changes as rows ...
SELECT id, tbl, op, before, after FROM cdc_changes('search-index');
-- ... or as a JSON batch, and acknowledged once handled.
.mode list
SELECT cdc_poll('search-index', 2) AS batch;
SELECT cdc_ack('search-index', json_extract(cdc_poll('search-index', 2), '$[1].id')) AS acked_up_to;
.mode box --wrap 100
SELECT id, op FROM cdc_changes('search-index');
-- 5. Status: tables, consumers, lag.
.mode list
SELECT cdc_status() AS status;
