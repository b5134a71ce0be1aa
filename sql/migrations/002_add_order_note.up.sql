-- 002 up: a schema change on a captured table. ALTER TABLE and the capture
-- refresh run in one transaction: no write can commit between them, so every
-- change is captured, and every change after this migration carries `note`.
-- (Run once, as migration tools do: ADD COLUMN fails if the column exists.)
BEGIN IMMEDIATE;
ALTER TABLE orders ADD COLUMN note TEXT;
SELECT cdc_setup('orders');
COMMIT;
