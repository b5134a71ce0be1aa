#!/usr/bin/env python3
"""Checks the relative links of the project's Markdown pages.

usage: doc_links.py SOURCE_DIR

For README.md, CONTRIBUTING.md and docs/*.md: every link [text](target) that
is not a URL must name a file or directory that exists, relative to the page,
and a #fragment must be the anchor of a heading of the target page (GitHub's
rule: the heading's text lower-cased, punctuation other than '-' and '_'
dropped, spaces made '-', '-1', '-2' ... added to repeats). Links inside code
blocks and code spans are not links and are skipped.
"""
import os
import re
import sys

root = sys.argv[1]
pages = ["README.md", "CONTRIBUTING.md"] + sorted(
    os.path.join("docs", f) for f in os.listdir(os.path.join(root, "docs")) if f.endswith(".md"))


def prose(text):
    """The page without its fenced code blocks (lines kept, so numbers hold)."""
    out, fence = [], None
    for line in text.split("\n"):
        m = re.match(r"^\s*(`{3,}|~{3,})", line)
        if fence is None and m:
            fence = m.group(1)
            out.append("")
        elif fence is not None:
            if line.strip().startswith(fence):
                fence = None
            out.append("")
        else:
            out.append(line)
    return out


def anchors(path):
    seen, res = {}, set()
    for line in prose(open(path, encoding="utf-8").read()):
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", m.group(1))  # a link: its text
        slug = re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        res.add(slug if n == 0 else "%s-%d" % (slug, n))
    return res


LINK = re.compile(r"\[(?:[^\]\[]|\[[^\]]*\])*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
bad, count = [], 0
for page in pages:
    path = os.path.join(root, page)
    lines = prose(open(path, encoding="utf-8").read())
    text = "\n".join(lines)
    text = re.sub(r"``[^`]*``|`[^`\n]*`", lambda m: " " * len(m.group(0)), text)  # code spans
    for m in LINK.finditer(text):
        target = m.group(1)
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        count += 1
        line = text.count("\n", 0, m.start()) + 1
        file, _, frag = target.partition("#")
        dest = os.path.normpath(os.path.join(os.path.dirname(path), file)) if file else path
        if not os.path.exists(dest):
            bad.append("%s:%d: %s: no such file" % (page, line, target))
        elif frag and (not dest.endswith(".md") or frag not in anchors(dest)):
            bad.append("%s:%d: %s: no heading with that anchor in %s" % (page, line, target, os.path.relpath(dest, root)))
for b in bad:
    print(b)
print("%d relative links in %d pages, %d broken" % (count, len(pages), len(bad)))
sys.exit(1 if bad else 0)
