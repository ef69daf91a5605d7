"""How much of a newsletter survives a link-tracking tool byte for byte, outside the hrefs it rewrote.

Both sides are masked first: in the original every ``href`` value that is an http(s) link (what a tool
is asked to rewrite), in the output every ``href`` value pointing at the tracking domain (what it did
rewrite), each quoted value becoming one marker byte. The masked original is then aligned with the
masked output line by line (``difflib``), and lines that differ are aligned again byte by byte; the
share of the original's bytes (markers excluded) found in order in the output is what survived.
Bytes a tool adds (its open pixel, say) cost nothing; bytes it drops, re-encodes or re-quotes do.
"""

from __future__ import annotations

import re
from difflib import SequenceMatcher

_HREF = re.compile(rb"""(\bhref\s*=\s*)("[^"]*"|'[^']*')""", re.IGNORECASE)
_HTTP = re.compile(rb"""^["']\s*(https?:)?//""", re.IGNORECASE)
MARKER = b"\x00"
_LARGEST_BLOCK = 200_000  # bytes on either side; larger unequal blocks count as lost (never seen here)


def _mask(document: bytes, keep: re.Pattern[bytes]) -> bytes:
    return _HREF.sub(lambda m: m.group(1) + MARKER if keep.match(m.group(2)) else m.group(0), document)


def _matched(original: bytes, output: bytes) -> int:
    matcher = SequenceMatcher(None, original, output, autojunk=False)
    return sum(
        size - original[start : start + size].count(MARKER)
        for start, _, size in matcher.get_matching_blocks()
    )


def _lines(document: bytes) -> tuple[list[bytes], list[bytes]]:
    """Each line's content and its line end (b"\r\n", b"\n" or b"" for the last)."""
    contents, ends = [], []
    for line in document.splitlines(keepends=True):
        content = line.rstrip(b"\r\n")
        contents.append(content)
        ends.append(line[len(content) :])
    return contents, ends


def _common_end(old: bytes, new: bytes) -> int:
    """Bytes of a line end that survive: all when equal, the b"\n" of a CRLF turned into LF."""
    if old == new:
        return len(old)
    return 1 if old.endswith(b"\n") and new.endswith(b"\n") else 0


def surviving_share(original: bytes, output: bytes, tracking_base: bytes) -> float:
    """The share (0..1) of the original, outside its http(s) hrefs, found unchanged in the output."""
    rewritten = re.compile(rb"""^["']\s*""" + re.escape(tracking_base), re.IGNORECASE)
    before = _mask(original, _HTTP)
    after = _mask(output, rewritten)
    (old_lines, old_ends), (new_lines, new_ends) = _lines(before), _lines(after)
    kept = 0
    for tag, i1, i2, j1, j2 in SequenceMatcher(None, old_lines, new_lines, autojunk=False).get_opcodes():
        if tag == "equal":
            for i, j in zip(range(i1, i2), range(j1, j2), strict=True):
                kept += len(old_lines[i]) - old_lines[i].count(MARKER) + _common_end(old_ends[i], new_ends[j])
        elif tag == "replace":
            old_block = b"".join(
                line + end for line, end in zip(old_lines[i1:i2], old_ends[i1:i2], strict=True)
            )
            new_block = b"".join(
                line + end for line, end in zip(new_lines[j1:j2], new_ends[j1:j2], strict=True)
            )
            if max(len(old_block), len(new_block)) <= _LARGEST_BLOCK:
                kept += _matched(old_block, new_block)
    total = len(before) - before.count(MARKER)
    return kept / total if total else 1.0
