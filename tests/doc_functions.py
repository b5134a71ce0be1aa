#!/usr/bin/env python3
"""Checks that the SQL reference documents everything the extension registers.

usage: doc_functions.py SQLITE3_SHELL EXTENSION docs/reference.md

Asks the real shell, with the extension loaded, for its SQL functions and
virtual-table modules named cdc_* (pragma_function_list, pragma_module_list),
and requires a heading of the reference for each: a heading whose code span
starts with the name ("## `cdc_poll(name [, limit])`", "## `cdc_changes`
(virtual table)"), followed by at least one ```sql example before the next
heading of the same level.
"""
import re
import subprocess
import sys

shell, ext, page = sys.argv[1:4]
r = subprocess.run([shell, "-batch", ":memory:"], input=".load %s\n.mode list\n"
                   "SELECT DISTINCT name FROM pragma_function_list WHERE name LIKE 'cdc%%';\n"
                   "SELECT name FROM pragma_module_list WHERE name LIKE 'cdc%%';\n" % ext,
                   capture_output=True, text=True)
names = sorted(set(n for n in r.stdout.split("\n") if n))
if r.returncode or not names:
    sys.exit("could not list the extension's functions: %s%s" % (r.stdout, r.stderr))

sections, cur = {}, None
for line in open(page, encoding="utf-8").read().split("\n"):
    m = re.match(r"^## (.*)", line)
    if m:
        cur = m.group(1)
        sections[cur] = []
    elif cur is not None:
        sections[cur].append(line)

missing = []
for n in names:
    heads = [h for h in sections if re.search(r"`%s\b" % re.escape(n), h)]
    if not heads:
        missing.append("%s: no '## `%s...`' heading in %s" % (n, n, page))
    elif not any("```sql" in sections[h] for h in heads):
        missing.append("%s: its section has no ```sql example" % n)
for m in missing:
    print(m)
print("%d functions and modules, %d not documented" % (len(names), len(missing)))
sys.exit(1 if missing else 0)
