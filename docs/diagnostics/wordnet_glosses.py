"""A large corpus of short texts in many imbalanced classes: WordNet's noun definitions (Debian's `wordnet-base`),
one JSON line a noun synset with its gloss (definition and usage examples, the synset's own words left out) and
its lexicographer file as the label — the 25 noun "supersenses" (noun.artifact, noun.person, noun.plant, …;
noun.Tops, 51 root concepts, left out). ~82k texts, median ~12 words; classes from ~300 to ~12k. Labels: what
kind of thing a definition describes. Used by README "Unseen data".

    apt-get download wordnet-base && dpkg-deb -x wordnet-base_*.deb wn
    python docs/diagnostics/wordnet_glosses.py wn/usr/share/wordnet/data.noun data/wordnet_nouns.jsonl
"""
import json
import sys
from collections import Counter
from pathlib import Path

# lexnames(5WN): the lexicographer file numbers of the noun supersenses, 04 .. 28 (03 is noun.Tops)
NOUN_FILES = {4: "act", 5: "animal", 6: "artifact", 7: "attribute", 8: "body", 9: "cognition", 10: "communication",
              11: "event", 12: "feeling", 13: "food", 14: "group", 15: "location", 16: "motive", 17: "object",
              18: "person", 19: "phenomenon", 20: "plant", 21: "possession", 22: "process", 23: "quantity",
              24: "relation", 25: "shape", 26: "state", 27: "substance", 28: "time"}


def glosses(data_noun: Path):
    """(gloss, supersense) of every noun synset; the file's licence header lines start with two spaces."""
    with open(data_noun, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            if line.startswith("  ") or " | " not in line:
                continue
            fields, gloss = line.split(" | ", 1)
            lex_file = int(fields.split()[1])
            if lex_file in NOUN_FILES and gloss.strip():
                yield gloss.strip(), NOUN_FILES[lex_file]


def main(data_noun: str, out: str) -> None:
    counts = Counter()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", encoding="utf-8") as fh:
        for text, label in glosses(Path(data_noun)):
            fh.write(json.dumps({"text": text, "label": label}) + "\n")
            counts[label] += 1
    print(f"{sum(counts.values())} glosses to {out}: {dict(counts.most_common())}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
