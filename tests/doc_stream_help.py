#!/usr/bin/env python3
"""Checks that docs/streaming.md quotes `cdc-stream --help` as it is.

usage: doc_stream_help.py CDC_STREAM docs/streaming.md

The page's section "`cdc-stream --help` (the sinks)" holds, in a plain code
block, the help text from its "sinks (" line to the end of its "format ("
paragraph. It must equal what
the built cdc-stream prints, except the list after "this build has:", which
names the sinks this build was linked with.
"""
import re
import subprocess
import sys

stream, page = sys.argv[1:3]
text = open(page, encoding="utf-8").read()
m = re.search(r"^#+ `cdc-stream --help`.*?\n```\n(.*?)^```", text, flags=re.S | re.M)
if not m:
    sys.exit("no `cdc-stream --help` section with a code block in " + page)
doc = m.group(1).rstrip("\n").split("\n")
h = subprocess.run([stream, "--help"], capture_output=True, text=True)
if h.returncode != 0:
    sys.exit("cdc-stream --help exited %d: %s" % (h.returncode, h.stderr))
out = h.stdout.rstrip("\n").split("\n")
start = [i for i, l in enumerate(out) if l.startswith("sinks (")]
if not start:
    sys.exit("cdc-stream --help has no 'sinks (' line:\n" + h.stdout)
fmt = [i for i, l in enumerate(out) if l.startswith("format (")]
if not fmt:
    sys.exit("cdc-stream --help has no 'format (' line:\n" + h.stdout)
end = next((i for i in range(fmt[0], len(out)) if not out[i].strip()), len(out))
real = out[start[0]:end]
norm = lambda lines: [re.sub(r"this build has: [^)]*", "this build has: ...", l.rstrip()) for l in lines]
if norm(doc) != norm(real):
    import difflib
    print("\n".join(difflib.unified_diff(norm(doc), norm(real), page, "cdc-stream --help", lineterm="")))
    sys.exit(1)
print("the %d lines of cdc-stream --help from 'sinks (' to its formats are quoted exactly" % len(real))
