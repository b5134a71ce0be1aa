-- cdc_changes: which constraints xBestIndex consumes. The INDEX number is
-- idxNum, one bit per constraint kind: 1 consumer argument, 2 id >, 4 id >=,
-- 8 id <, 16 id <=, 32 id =, 64 tbl = (BINARY collation only).
-- "INDEX 0" means a full scan of the retained log.
.mode list
CREATE TABLE orders(id INTEGER PRIMARY KEY, total);
SELECT cdc_setup('orders'), cdc_consumer_add('c');
EXPLAIN QUERY PLAN SELECT * FROM cdc_changes;
EXPLAIN QUERY PLAN SELECT * FROM cdc_changes('c');
EXPLAIN QUERY PLAN SELECT * FROM cdc_changes WHERE id > 5;
EXPLAIN QUERY PLAN SELECT * FROM cdc_changes WHERE id >= 5;
EXPLAIN QUERY PLAN SELECT * FROM cdc_changes WHERE id < 5;
EXPLAIN QUERY PLAN SELECT * FROM cdc_changes WHERE id <= 5;
EXPLAIN QUERY PLAN SELECT * FROM cdc_changes WHERE id = 5;
EXPLAIN QUERY PLAN SELECT * FROM cdc_changes WHERE id >= 5 AND id < 10;
EXPLAIN QUERY PLAN SELECT * FROM cdc_changes WHERE tbl = 'orders';
EXPLAIN QUERY PLAN SELECT * FROM cdc_changes('c') WHERE tbl = 'orders' AND id > 7;
EXPLAIN QUERY PLAN SELECT * FROM cdc_changes WHERE consumer = 'c' AND id >= 3;
EXPLAIN QUERY PLAN SELECT * FROM cdc_changes WHERE tbl = 'orders' COLLATE NOCASE;
-- Rows come out in id order: ORDER BY id needs no sort, DESC does.
EXPLAIN QUERY PLAN SELECT * FROM cdc_changes WHERE id > 5 ORDER BY id;
EXPLAIN QUERY PLAN SELECT * FROM cdc_changes ORDER BY id DESC;
-- As the inner loop of a join, the constraint comes from the outer table.
CREATE TABLE marks(name, after_id);
EXPLAIN QUERY PLAN SELECT c.id FROM marks m, cdc_changes(m.name) c WHERE c.id > m.after_id;
