"""An unseen text corpus for trying the shipped text configs the way a new user would: the DESCRIPTION sections of
the Google Cloud CLI's man pages installed on this machine (`/usr/share/man/man1/gcloud_*.1.gz`, package
google-cloud-cli), labelled by command group ("which product does this command manage?": compute, container, iam …).

Technical prose of one vendor, short (median 15 words), 12 groups of very different sizes (compute ~40 %): nothing
in the shipped configs was chosen on it. Each command is kept once (its GA page, else beta, else alpha: the three
are near copies), and every `gcloud …` command name is replaced by "this command", so the label is not in the text.
Writes JSON lines {"text", "label"}:

    python docs/diagnostics/gcloud_man_pages.py data/gcloud.jsonl [--groups 12]
"""
from __future__ import annotations

import argparse
import collections
import gzip
import json
import re
from pathlib import Path

MAN = Path("/usr/share/man/man1")
TRACKS = ("ga", "beta", "alpha", "preview")  # preferred first


def description(page: str) -> str:
    """The DESCRIPTION section as plain prose: troff requests and font escapes dropped, command names replaced."""
    found = re.search(r'\.SH "DESCRIPTION"\n(.*?)(\n\.SH |\Z)', page, re.S)
    if not found:
        return ""
    body = re.sub(r"^\.\w+.*$", " ", found.group(1), flags=re.M)
    body = re.sub(r"\\f[B5]gcloud.*?\\fR", "this command", body, flags=re.S)
    body = re.sub(r"\\f[BIRP5]", "", body).replace("\\-", "-").replace("\\e", "\\")
    body = re.sub(r"\\\(\w\w|\\.", " ", body)
    body = re.sub(r"\bgcloud(\s+[a-z][a-z0-9-]*)+", "this command", body)
    return " ".join(body.split())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--groups", type=int, default=12, help="the largest command groups kept")
    args = parser.parse_args()
    pages: dict[str, dict] = {}
    for path in sorted(MAN.glob("gcloud_*.1.gz")):
        words = path.name[: -len(".1.gz")].split("_")[1:]
        track = words[0] if words and words[0] in TRACKS else "ga"
        words = words[1:] if track != "ga" else words
        if len(words) < 2:  # a group's own page lists its commands: the label in all but name
            continue
        text = description(gzip.open(path, "rt", errors="replace").read())
        if len(text.split()) >= 8:
            pages.setdefault("_".join(words), {})[track] = {"text": text, "label": words[0]}
    rows = [next(kept[t] for t in TRACKS if t in kept) for _, kept in sorted(pages.items())]
    groups = {g for g, _ in collections.Counter(r["label"] for r in rows).most_common(args.groups)}
    rows = [r for r in rows if r["label"] in groups]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as fh:
        fh.writelines(json.dumps(r) + "\n" for r in rows)
    print(f"{len(rows)} pages in {len(groups)} groups: {collections.Counter(r['label'] for r in rows).most_common()}")


if __name__ == "__main__":
    main()
