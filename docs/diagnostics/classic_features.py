"""What the `classic` text baseline should read: TF-IDF of words, of character 2-4-grams inside words, or both,
on a validation carve of a corpus's train split (the test split is never read). 3 seeds at 1 % and 10 %, one at
100 %, class-balanced subsets as the fine-tune grid draws them; validation accuracy (%).

usage: python docs/diagnostics/classic_features.py NAME CONFIG [key=value ...]
  e.g. python docs/diagnostics/classic_features.py ja configs/text/mlm_files.yaml "data.files=[ja.jsonl]"
"""
from __future__ import annotations

import sys

import numpy as np
from sklearn.model_selection import train_test_split

from ssl_pipeline.config import load_config
from ssl_pipeline.data.text import load_texts
from ssl_pipeline.finetune.labeled import TextLabeled
from ssl_pipeline.finetune.subsets import EmptyClassError, balanced_subset


def main() -> None:
    name, config, overrides = sys.argv[1], sys.argv[2], sys.argv[3:]
    cfg = load_config(config, overrides)
    train = load_texts(cfg.data, "train")
    texts, labels = train.texts, np.asarray(train.labels)
    fit, val = train_test_split(np.arange(len(labels)), test_size=0.1, random_state=cfg.data.split_seed + 1,
                                stratify=labels)
    cells = []
    for features in ("words", "chars", "words+chars"):
        ft = load_config(config, overrides + [f"finetune.classic.text_features={features}"])
        scores = []
        for fraction in (0.01, 0.1, 1.0):
            accuracies = []
            for seed in (range(3) if fraction < 1 else [0]):
                try:
                    idx = fit[balanced_subset(labels[fit], train.num_classes, seed, fraction)] if fraction < 1 else fit
                except EmptyClassError:  # fewer labels than classes at this fraction
                    break
                model = TextLabeled.classic_model(type("Data", (), {"cfg": ft})())
                model.fit([texts[i] for i in idx], labels[idx])
                accuracies.append(100 * np.mean(model.predict([texts[i] for i in val]) == labels[val]))
            scores.append(f"{np.mean(accuracies):.1f}" if accuracies else "-")
        cells.append(f"{features}: {' / '.join(scores)}")
    print(f"{name} ({len(fit)} fit / {len(val)} validation): " + "; ".join(cells), flush=True)


if __name__ == "__main__":
    main()
