"""A small corpus as a user might have one: the entries of Debian changelogs installed on this machine
(`/usr/share/doc/*/changelog.Debian.gz`), one JSON line a release entry with its text and the source package it
belongs to, for the eight sources with the most entries (imbalanced, 135–675 each; ~1,900 entries, median ~40
words). Labels: which package a change note is about — the way tickets or release notes get routed to a team.
Used by README "Unseen data".

    python docs/diagnostics/changelog_entries.py data/changelog_entries.jsonl
"""
import gzip
import json
import re
import sys
from collections import Counter
from pathlib import Path

HEADER = re.compile(r"^(\S+) \(([^)]+)\) [^;]+; urgency=")
SOURCES = 8


def entries(path: Path) -> tuple[str, list[str]]:
    """(source, texts) of one changelog: the bullet text of each entry, header and trailer left out."""
    source, found, lines = None, [], []  # the source as its newest entry names it
    with gzip.open(path, "rt", encoding="utf-8", errors="replace") as fh:
        for line in fh:
            head = HEADER.match(line)
            if head:
                source, lines = source or head.group(1), []
            elif line.startswith(" -- "):
                text = " ".join(part.strip().lstrip("*+-").strip() for part in lines if part.strip())
                if text:
                    found.append(text)
            else:
                lines.append(line)
    return source, found


def main(out: str) -> None:
    by_source: dict[str, list[str]] = {}
    for path in sorted(Path("/usr/share/doc").glob("*/changelog.Debian.gz")):
        if path.is_symlink():
            continue
        source, texts = entries(path)
        if source and len(texts) > len(by_source.get(source, [])):  # binary packages of one source share it
            by_source[source] = texts
    chosen = sorted(by_source, key=lambda s: -len(by_source[s]))[:SOURCES]
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", encoding="utf-8") as fh:
        for source in chosen:
            for text in by_source[source]:
                fh.write(json.dumps({"text": text, "label": source}) + "\n")
    counts = Counter({s: len(by_source[s]) for s in chosen})
    print(f"{sum(counts.values())} entries to {out}: {dict(counts)}")


if __name__ == "__main__":
    main(sys.argv[1])
