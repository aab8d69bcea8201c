"""Debian's package descriptions in another language (short + long text), labelled by the package's Section:
a real, non-English text classification corpus (Japanese ~4.7k, German ~10k, Russian ~2.7k texts).

usage: python docs/diagnostics/debian_translations.py LANG OUT.jsonl [--top 20]
       (first: apt-get update -o Acquire::Languages=LANG; the sections come from apt's Packages lists)
"""
from __future__ import annotations

import argparse
import collections
import glob
import json
import subprocess
import sys


def lz4_text(path: str) -> str:
    return subprocess.run(["lz4", "-dc", path], check=True, capture_output=True, text=True).stdout


def sections() -> dict[str, str]:
    """package -> its Section (the last part: 'contrib/games' -> 'games')."""
    out = {}
    for path in sorted(glob.glob("/var/lib/apt/lists/*_main_binary-*_Packages.lz4")):
        for stanza in lz4_text(path).split("\n\n"):
            fields = dict(line.split(":", 1) for line in stanza.splitlines()
                          if line and not line[0].isspace() and ":" in line)
            if "Package" in fields and "Section" in fields:
                out[fields["Package"].strip()] = fields["Section"].strip().split("/")[-1]
    return out


def descriptions(lang: str):
    """(package, short + long description) from apt's Translation-LANG lists; the long text's '.' lines are
    paragraph breaks."""
    paths = sorted(glob.glob(f"/var/lib/apt/lists/*_main_i18n_Translation-{lang}.lz4"))
    if not paths:
        sys.exit(f"no Translation-{lang} lists: run `apt-get update -o Acquire::Languages={lang}` first")
    for path in paths:
        for stanza in lz4_text(path).split("\n\n"):
            lines, package = stanza.splitlines(), None
            for i, line in enumerate(lines):
                if line.startswith("Package:"):
                    package = line.split(":", 1)[1].strip()
                elif line.startswith(f"Description-{lang}:") and package:
                    body = [x[1:].strip() for x in lines[i + 1:] if x.startswith(" ")]
                    long = " ".join("" if x == "." else x for x in body)
                    yield package, (line.split(":", 1)[1].strip() + " " + long).strip()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("lang")
    ap.add_argument("out")
    ap.add_argument("--top", type=int, default=20, help="keep the TOP most frequent sections")
    args = ap.parse_args()
    section, rows, seen = sections(), [], set()
    for package, text in descriptions(args.lang):
        if package in section and text and text not in seen:
            seen.add(text)
            rows.append({"text": text, "label": section[package]})
    keep = {s for s, _ in collections.Counter(r["label"] for r in rows).most_common(args.top)}
    rows = [r for r in rows if r["label"] in keep]
    with open(args.out, "w", encoding="utf-8") as fh:
        fh.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    print(f"{len(rows)} texts, {len(keep)} sections -> {args.out}")


if __name__ == "__main__":
    main()
