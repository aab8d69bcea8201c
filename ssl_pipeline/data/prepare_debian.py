"""Unlabeled text for the Debian recipe: the long package descriptions from apt's Translation-en lists.

The labeled corpus (`../shared/data/debian_descriptions.py`) holds one-line descriptions (~9 tokens each);
the long descriptions of the same archive add an order of magnitude more real text for pretraining. Packages
whose one-line description falls in the labeled corpus's *test* split (same carve as every stage uses) are
left out, so no test text reaches pretraining.

usage: python -m ssl_pipeline.data.prepare_debian data/debian.jsonl data/debian_long.jsonl
       (run `apt-get update -o Acquire::Languages=en` first)
"""
from __future__ import annotations

import argparse
import glob
import json
import subprocess
import sys

from ..config import DataConfig
from .text import load_texts


def translation_stanzas():
    paths = sorted(glob.glob("/var/lib/apt/lists/*_main_i18n_Translation-en*"))
    if not paths:
        sys.exit("no Translation-en lists: run `apt-get update -o Acquire::Languages=en` first")
    for p in paths:
        if p.endswith(".lz4"):
            text = subprocess.run(["lz4", "-dc", p], check=True, capture_output=True, text=True).stdout
        else:
            text = open(p, encoding="utf-8", errors="replace").read()
        yield from text.split("\n\n")


def parse(stanza: str) -> tuple[str, str] | None:
    lines = stanza.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("Description-en:"):
            short = line.split(":", 1)[1].strip()
            body = [ln.strip() for ln in lines[i + 1:] if ln.startswith(" ") and ln.strip() != "."]
            return short, " ".join([short + "."] + body)
    return None


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("labeled", help="JSON lines from debian_descriptions.py")
    ap.add_argument("out")
    ap.add_argument("--test-fraction", type=float, default=DataConfig.test_fraction)
    ap.add_argument("--split-seed", type=int, default=DataConfig.split_seed)
    a = ap.parse_args()
    cfg = DataConfig(source="jsonl", files=[a.labeled], test_fraction=a.test_fraction, split_seed=a.split_seed)
    test_texts = set(load_texts(cfg, "test").texts)
    seen, kept, dropped = set(), 0, 0
    with open(a.out, "w", encoding="utf-8") as fh:
        for stanza in translation_stanzas():
            parsed = parse(stanza)
            if not parsed or parsed[1] in seen:
                continue
            short, full = parsed
            seen.add(full)
            if short in test_texts:
                dropped += 1
                continue
            fh.write(json.dumps({"text": full}) + "\n")
            kept += 1
    print(f"{kept} long descriptions -> {a.out} ({dropped} left out: their short text is in the test split)")


if __name__ == "__main__":
    main()
