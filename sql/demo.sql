-- sqlite-cdc demo: capture changes to a table and read them back.
.headers on
.mode box
PRAGMA journal_mode = WAL;
CREATE TABLE orders(id INTEGER PRIMARY KEY, customer TEXT, total REAL, note BLOB);
SELECT cdc_version() AS version;
SELECT cdc_setup('orders') AS setup;
-- Writes from any connection are captured by plain-SQL triggers.
INSERT INTO orders(customer, total, note) VALUES ('ada', 9.5, x'CAFE');
INSERT INTO orders(customer, total) VALUES ('grace', 0.1 + 0.2);
UPDATE orders SET total = 12.0 WHERE customer = 'ada';
DELETE FROM orders WHERE customer = 'grace';
SELECT id, op, v0, v1, v2 FROM __cdc_log ORDER BY id;
