"""A table with its text in two fields, as ticket and catalogue exports have it: Debian packages with their
one-line summary and their long description in separate columns, labelled by archive section — read from apt's
lists (`Packages` for the section, `Translation-en` for both descriptions; run `apt-get update -o
Acquire::Languages=en` first). Unlike the shipped Debian recipe (one-liners, 20 chosen topics), every section with
at least `--min-section` sampled packages is kept, and packages of one source often share their long description
word for word (`libfoo1`, `libfoo-dev`, `libfoo-doc`): the `details` column alone repeats a lot. Used by README
"Unseen data".

usage: python docs/diagnostics/debian_packages.py OUT.csv [--packages 6000] [--min-section 40]
"""
from __future__ import annotations

import argparse
import csv
import glob
import random
import subprocess
from collections import Counter


def stanzas(pattern: str):
    for path in sorted(glob.glob(f"/var/lib/apt/lists/{pattern}")):
        data = subprocess.run(["lz4", "-dc", path], check=True, capture_output=True).stdout if path.endswith(".lz4") \
            else open(path, "rb").read()
        yield from data.decode("utf-8", "replace").split("\n\n")


def fields(stanza: str) -> dict[str, str]:
    """Field -> value; continuation lines (a leading space) joined with newlines, ' .' as an empty line."""
    out, key = {}, None
    for line in stanza.splitlines():
        if line.startswith(" ") and key:
            out[key] += "\n" + ("" if line.strip() == "." else line.strip())
        elif ":" in line:
            key, value = line.split(":", 1)
            out[key] = value.strip()
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out")
    ap.add_argument("--packages", type=int, default=6000)
    ap.add_argument("--min-section", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    section = {}
    for s in stanzas("*_binary-amd64_Packages*"):
        f = fields(s)
        if "Package" in f and "Section" in f:
            section[(f["Package"], f.get("Description-md5"))] = f["Section"].split("/")[-1]
    rows = {}
    for s in stanzas("*_i18n_Translation-en*"):
        f = fields(s)
        key = (f.get("Package"), f.get("Description-md5"))
        if key in section and "Description-en" in f and "\n" in f["Description-en"]:
            summary, details = f["Description-en"].split("\n", 1)
            rows[key[0]] = (key[0], summary.strip(), details.strip(), section[key])
    names = sorted(rows)
    random.Random(args.seed).shuffle(names)
    sample = [rows[n] for n in names[: args.packages]]
    counts = Counter(r[3] for r in sample)
    kept = [r for r in sample if counts[r[3]] >= args.min_section]
    with open(args.out, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["package", "summary", "details", "section"])
        w.writerows(kept)
    details = Counter(r[2] for r in kept)
    print(f"{args.out}: {len(kept):,} packages in {len({r[3] for r in kept})} sections "
          f"({', '.join(f'{s} {n}' for s, n in Counter(r[3] for r in kept).most_common())}); "
          f"{sum(n for n in details.values() if n > 1):,} share their details with another package")


if __name__ == "__main__":
    main()
