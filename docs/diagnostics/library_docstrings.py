"""An unseen text corpus for trying the shipped text configs the way a new user would: docstrings of ten Python
libraries installed in this virtualenv, labelled by library ("which library does this docstring come from?").

Unlike the demo's stdlib docstrings (short, ten stdlib packages), these are long NumPy-/Google-style docstrings of
other projects; nothing in the shipped configs was chosen on them. Writes JSON lines {"text", "label"}:

    python docs/diagnostics/library_docstrings.py data/library_docstrings.jsonl [--per-library 500]
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import random
from pathlib import Path

from ssl_pipeline.data.text import docstrings_under

LIBRARIES = ("torch", "transformers", "sklearn", "numpy", "scipy", "pandas", "matplotlib", "datasets", "timm",
             "accelerate")


def docstrings(package: str) -> list[str]:
    """The package's docstrings of at least 8 words (tests left out), as the embedded corpus reads the stdlib's."""
    root = Path(importlib.util.find_spec(package).origin).parent
    return [t for t in docstrings_under(root, ("test", "tests", "testing")) if len(t.split()) >= 8]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--per-library", type=int, default=500, help="docstrings kept per library (a random sample)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    seen, rows = set(), []
    for lib in LIBRARIES:
        texts = [t for t in dict.fromkeys(docstrings(lib)) if t not in seen]  # a text in two libraries would leak
        random.Random(args.seed).shuffle(texts)
        kept = texts[:args.per_library]
        seen.update(kept)
        rows += [{"text": t, "label": lib} for t in kept]
        print(f"{lib}: {len(texts)} docstrings, kept {len(kept)}")
    random.Random(args.seed).shuffle(rows)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    print(f"{len(rows)} texts, {len(LIBRARIES)} labels -> {args.out}")


if __name__ == "__main__":
    main()
