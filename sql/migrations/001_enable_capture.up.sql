-- 001 up: capture the tables the search index needs and register its
-- consumer. Idempotent (safe to run again): cdc_setup refreshes triggers that
-- exist, cdc_consumer_add keeps an existing consumer's position.
-- Runs on a connection that loaded the extension (sqlite3: .load cdc).
BEGIN IMMEDIATE;
SELECT cdc_setup('customers');
SELECT cdc_setup('orders');
SELECT cdc_consumer_add('search-index');
COMMIT;
