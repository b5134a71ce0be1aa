-- 001 down: stop capturing those tables and drop the consumer. Idempotent:
-- it acts only on what cdc_status() reports, so a second run changes nothing
-- (cdc_teardown(table) itself fails on a table that is not captured).
-- Changes already logged for other consumers stay deliverable; to remove
-- every trace of sqlite-cdc instead, run SELECT cdc_teardown();
BEGIN IMMEDIATE;
SELECT cdc_teardown(json_extract(value, '$.name'))
  FROM json_each(cdc_status(), '$.tables')
 WHERE json_extract(value, '$.name') IN ('customers', 'orders');
SELECT cdc_consumer_drop(json_extract(value, '$.name'))
  FROM json_each(cdc_status(), '$.consumers')
 WHERE json_extract(value, '$.name') = 'search-index';
COMMIT;
