#!/usr/bin/env python3
"""Writes three experimental trigger sets for `cdc_trigger_cost sql OP 6 N FILE`.

Each is the values-only trigger (one log row: an op code and the row's values)
on the bench's 6-column table t, differing only in how the op code is written:

  values.sql    a literal (3)
  call.sql      a function call that changes nothing (abs(3))
  inline.sql    an inline expression (coalesce(NULL, 3))

Comparing their instruction counts shows what a function call in a trigger
costs a user's UPDATE or DELETE inside a transaction (a statement journal),
whatever the function does (docs/performance.md).

  bench/function_call_triggers.py DIR
  valgrind --tool=callgrind --instr-atstart=no build-bench/bench/cdc_trigger_cost sql update_tx 6 2 DIR/call.sql
"""
import os
import sys

COLS = ["id"] + ["c%d" % i for i in range(1, 6)]


def triggers(code):
    out = "CREATE TABLE vlog(id INTEGER PRIMARY KEY, op INTEGER, %s);\n" % ", ".join(
        "v%d" % i for i in range(2 * len(COLS)))
    for op, n, images in (("INSERT", 1, ["NEW."]), ("UPDATE", 2, ["OLD.", "NEW."]), ("DELETE", 3, ["OLD."])):
        names, vals = ["op"], [code(n)]
        for prefix in images:
            for c in COLS:
                names.append("v%d" % (len(names) - 1))
                vals.append('%s"%s"' % (prefix, c))
        out += "CREATE TRIGGER t_%s AFTER %s ON t BEGIN INSERT INTO vlog(%s) VALUES(%s); END;\n" % (
            op.lower(), op, ",".join(names), ",".join(vals))
    return out


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: function_call_triggers.py DIR")
    d = sys.argv[1]
    os.makedirs(d, exist_ok=True)
    for name, code in (("values", str), ("call", lambda n: "abs(%d)" % n),
                       ("inline", lambda n: "coalesce(NULL, %d)" % n)):
        with open(os.path.join(d, name + ".sql"), "w") as f:
            f.write(triggers(code))


if __name__ == "__main__":
    main()
