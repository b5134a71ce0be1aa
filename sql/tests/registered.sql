-- Pins exactly what the extension registers: SQL functions (name, number of
-- arguments, flags: 524288 = SQLITE_DIRECTONLY, 2099200 = DETERMINISTIC |
-- INNOCUOUS) and virtual-table modules. A new function must be added here.
.mode list
SELECT name, narg, enc, flags FROM pragma_function_list
 WHERE name LIKE 'cdc%' ESCAPE '\' ORDER BY name, narg;
SELECT '--';
SELECT name FROM pragma_module_list WHERE name LIKE 'cdc%' ORDER BY name;
