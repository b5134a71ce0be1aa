-- 002 down: DROP COLUMN refuses to drop a column that triggers use
-- ("error in trigger ... no such column"), and capture triggers name every
-- column. So: remove the triggers, drop the column, capture again, all in one
-- transaction; logged changes stay deliverable and nothing is missed.
BEGIN IMMEDIATE;
SELECT cdc_teardown('orders');
ALTER TABLE orders DROP COLUMN note;
SELECT cdc_setup('orders');
COMMIT;
