"""A tiny corpus (under 500 texts): user-interface messages of free software in six close Romance languages,
labelled by language — Spanish, Portuguese, Galician, Catalan, Italian and French, read from the gettext
catalogs (`.mo`) every Debian machine carries under /usr/share/locale. Each English source message goes to one
language only, so no two texts are translations of each other (the classes differ in language, not content).
Galician sits between Portuguese and Spanish, Catalan between Spanish and French: not trivially separable by a
handful of words. Used by README "Unseen data".

usage: python docs/diagnostics/ui_languages.py OUT.csv [--per-language 80]
"""
from __future__ import annotations

import argparse
import csv
import gettext
import random
import re
from pathlib import Path

LANGUAGES = ["es", "pt", "gl", "ca", "it", "fr"]
DOMAINS = ["coreutils", "glib20", "gtk20", "apt", "dpkg", "bash", "findutils", "grep", "diffutils",
           "gettext-tools", "Linux-PAM", "PackageKit", "gdk-pixbuf", "at-spi2-core", "appstream"]
PLACEHOLDER = re.compile(r"%[-#0 +']*\d*(?:\.\d+)?[hlLqjzt]*[diouxXeEfgGcspn%]|%\d+\$\w|\{\w*\}|<[^>]+>|&\w+;")


def catalog(lang: str, domain: str) -> dict[str, str]:
    """English message -> its translation, for one language's catalog of one program (empty when absent)."""
    path = Path("/usr/share/locale") / lang / "LC_MESSAGES" / f"{domain}.mo"
    if not path.is_file():
        return {}
    with path.open("rb") as f:
        try:
            entries = gettext.GNUTranslations(f)._catalog  # the parsed table; gettext has no public accessor
        except UnicodeDecodeError:  # an old catalog in Latin-1 whose header gettext misreads: left out
            return {}
    return {k: v for k, v in entries.items() if isinstance(k, str) and k and isinstance(v, str)}


def usable(text: str) -> str | None:
    """One line of prose: placeholders and markup dropped, at least five words of letters, at most 200 characters."""
    text = " ".join(PLACEHOLDER.sub(" ", text.replace("_", "")).split())
    if len(re.findall(r"[^\W\d_]{2,}", text)) < 5 or len(text) > 200:
        return None
    return text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--per-language", type=int, default=80)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    translated = {lang: {} for lang in LANGUAGES}  # lang -> english -> usable translation
    for lang in LANGUAGES:
        for domain in DOMAINS:
            for english, text in catalog(lang, domain).items():
                if (clean := usable(text)) and clean != usable(english):
                    translated[lang].setdefault(english, clean)
    sources = sorted(set().union(*translated.values()))
    rng.shuffle(sources)
    taken, rows = set(), []
    for _ in range(args.per_language):  # round robin: each language takes its next untaken source message
        for lang in LANGUAGES:
            english = next((e for e in sources if e not in taken and e in translated[lang]), None)
            if english is None:
                raise SystemExit(f"not enough messages for {lang}")
            taken.add(english)
            rows.append((translated[lang][english], lang))
    rng.shuffle(rows)
    with args.out.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        writer.writerows(rows)
    print(f"{args.out}: {len(rows)} texts, {args.per_language} per language ({', '.join(LANGUAGES)})")


if __name__ == "__main__":
    main()
