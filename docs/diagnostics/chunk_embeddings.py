"""Does reading more of each long document help the frozen-embedding rows? `linear_probe` and `knn` on the mean of
an encoder's embeddings over the first K consecutive chunks of max_length tokens (K = 1 is what the grid does), on
the validation carve of `finetune.evaluate_on=validation` (the test split is never read). 3 seeds at 1 % and 10 %.

usage: python docs/diagnostics/chunk_embeddings.py ENCODER_DIR CONFIG [key=value ...] [--chunks 1 4 16]
  e.g. python docs/diagnostics/chunk_embeddings.py runs/man/encoder configs/text/mlm_files.yaml data.root=man_docs
"""
from __future__ import annotations

import argparse

import numpy as np
import torch

from ssl_pipeline.config import load_config
from ssl_pipeline.export import load_encoder, read_spec
from ssl_pipeline.finetune import methods as M
from ssl_pipeline.finetune.labeled import labeled_data
from ssl_pipeline.finetune.subsets import balanced_subset


@torch.no_grad()
def chunk_mean_embeddings(encoder, tokenizer, texts: list[str], chunks: int, length: int) -> torch.Tensor:
    """(N, D): per text, the mean embedding of its first `chunks` blocks of `length` tokens ([CLS] … [SEP] each)."""
    body = length - 2
    rows, owner = [], []
    for d, ids in enumerate(tokenizer(texts, add_special_tokens=False, truncation=False)["input_ids"]):
        for start in range(0, max(len(ids), 1), body)[:chunks]:
            rows.append([tokenizer.cls_token_id] + ids[start:start + body] + [tokenizer.sep_token_id])
            owner.append(d)
    out = []
    for s in range(0, len(rows), 256):
        batch = rows[s:s + 256]
        width = max(map(len, batch))
        ids = torch.tensor([r + [tokenizer.pad_token_id] * (width - len(r)) for r in batch])
        mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in batch])
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out.append(encoder(input_ids=ids, attention_mask=mask).float())
    owner_t = torch.as_tensor(owner)
    sums = torch.zeros(len(texts), out[0].shape[1]).index_add_(0, owner_t, torch.cat(out))
    return sums / torch.bincount(owner_t, minlength=len(texts)).clamp(min=1)[:, None]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("encoder")
    ap.add_argument("config")
    ap.add_argument("overrides", nargs="*")
    ap.add_argument("--chunks", type=int, nargs="+", default=[1, 4, 16])
    args = ap.parse_args()
    cfg = load_config(args.config, args.overrides + ["finetune.evaluate_on=validation"])
    spec = read_spec(args.encoder)
    data = labeled_data(cfg, spec, args.encoder)  # a ValidationView when the source has no validation split
    encoder = load_encoder(args.encoder, expect_modality="text").eval()
    texts = data.data.train.texts if hasattr(data, "fit_idx") else data.train.texts
    fit = data.fit_idx if hasattr(data, "fit_idx") else np.arange(len(texts))
    val = data.val_idx if hasattr(data, "val_idx") else None
    if val is None:
        raise SystemExit("this diagnostic scores the validation carve of the train split (a source without its own "
                         "validation split)")
    y_fit, y_val = data.train_labels, data.test_labels
    for chunks in args.chunks:
        feats = chunk_mean_embeddings(encoder, data.tokenizer, texts, chunks, data.max_length)
        cells = []
        for fraction in (0.01, 0.1):
            for name in ("linear_probe", "knn"):
                accuracies = []
                for seed in range(3):
                    idx = balanced_subset(y_fit, data.num_classes, seed, fraction)
                    train_f, val_f = feats[fit][idx], feats[val]
                    if name == "linear_probe":
                        pred = M.LinearProbe(train_f, y_fit[idx], data.num_classes, cfg.finetune.probe_c).predict(val_f)
                    else:
                        pred = M.knn(train_f, y_fit[idx], val_f, cfg.finetune.knn_k)
                    accuracies.append(100 * np.mean(pred == y_val))
                cells.append(f"{name} {fraction:g}: {np.mean(accuracies):.1f} ± {np.std(accuracies):.1f}")
        print(f"{chunks} chunk(s): " + "; ".join(cells), flush=True)


if __name__ == "__main__":
    main()
