#!/usr/bin/env python3
"""Runs a Markdown page's SQL examples through the real sqlite3 shell.

usage: doc_examples.py SQLITE3_SHELL EXTENSION PAGE.md [--may-have-none]

README.md and each docs/*.md page are run on their own (ctest docs.*).
With --may-have-none a page without examples passes (pages of figures or
prose); without it, a page with no example is an error.

Every fenced block whose info string is `sql` is an example: lines starting
with `--> ` are the output the example promises, all other lines are input.
The blocks run in order in one fresh database (so later examples build on
earlier ones), in `.mode list`; each block's real output must equal its
promised output. Error lines are compared without the shell's "near line N"
detail, and `"ts":<digits>` in JSON is compared as `"ts":TS`.
"""
import os
import re
import subprocess
import sys
import tempfile

shell, ext, readme = sys.argv[1:4]
may_have_none = sys.argv[4:] == ["--may-have-none"]
if sys.argv[4:] and not may_have_none:
    sys.exit(__doc__)
text = open(readme, encoding="utf-8").read()
blocks = re.findall(r"^```sql\n(.*?)^```", text, flags=re.S | re.M)
if not blocks:
    if may_have_none:
        print("no ```sql examples in " + readme)
        sys.exit(0)
    sys.exit("no ```sql examples in " + readme)

MARK = "@@block@@"
script = [".load " + ext, ".mode list", ".bail off"]
expected = []
for b in blocks:
    inp, out = [], []
    for line in b.splitlines():
        if line.startswith("--> ") or line == "-->":
            out.append(line[4:])
        else:
            inp.append(line)
    script.append(".print " + MARK)
    script.extend(inp)
    expected.append(out)

def norm(lines):
    res = []
    for l in lines:
        l = re.sub(r"^(Parse|Runtime) error near line \d+: ", "Error: ", l)
        l = re.sub(r"^Error: near line \d+: ", "Error: ", l)
        l = re.sub(r'"ts":\d+', '"ts":TS', l)
        res.append(l.rstrip())
    while res and res[-1] == "":
        res.pop()
    return res

# The shell writes errors to stderr: merge the two so order is kept.
with tempfile.TemporaryDirectory() as d:
    r = subprocess.run(["stdbuf", "-o0", shell, "-batch", os.path.join(d, "doc.db")], input="\n".join(script) + "\n",
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=d)
    got = r.stdout.split("\n")

outs, cur = [], None
for line in got:
    if line == MARK:
        cur = []
        outs.append(cur)
    elif cur is not None:
        cur.append(line)
    elif line.strip():
        print("output before the first example:", line)
        sys.exit(1)

failed = 0
for i, (b, exp) in enumerate(zip(blocks, expected)):
    have = norm(outs[i]) if i < len(outs) else ["<no output>"]
    if norm(exp) != have:
        failed += 1
        print("%s example %d differs:\n--- example\n%s--- promised\n%s\n--- real\n%s\n" %
              (os.path.basename(readme), i + 1, b, "\n".join(norm(exp)), "\n".join(have)))
print("%d passed, %d failed" % (len(blocks) - failed, failed))
sys.exit(1 if failed else 0)
