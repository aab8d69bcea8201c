"""How the `probe_classic` row should put the SSL encoder and the `classic` baseline together, on the validation carve
(`finetune.evaluate_on=validation`; the test split is never read): the class probabilities averaged, their logs
summed (a product of experts), the same with the two weights chosen by 3-fold cross-validation on the labeled subset
(`methods.expert_weights`: the default), or one logistic regression on both feature sets with the embeddings scaled
by a (fixed, or to the classic features' mean row norm: "eqnorm"). 3 seeds per label fraction, class-balanced
subsets as the grid draws them; validation accuracy (%), mean ± std.

usage: python docs/diagnostics/combine_classic.py CONFIG ENCODER_DIR FRACTIONS [key=value ...]
  e.g. python docs/diagnostics/combine_classic.py configs/text/mlm_files.yaml runs/cmake/encoder 0.05,0.1,1.0 \\
           data.root=data/cmake_help
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from scipy import sparse
from sklearn.linear_model import LogisticRegression

from ssl_pipeline.config import load_config
from ssl_pipeline.engine import make_accelerator
from ssl_pipeline.export import load_encoder, read_spec
from ssl_pipeline.finetune import methods as M
from ssl_pipeline.finetune.labeled import labeled_data
from ssl_pipeline.finetune.runner import classic_out_of_fold, fitted_classic, probe_out_of_fold
from ssl_pipeline.finetune.subsets import balanced_subset


def one_model(classic, x_train, x_test, z_train, z_test, y, scale: float) -> np.ndarray:
    """Test probabilities of one logistic regression (classic's C) on [classic features, scale × embeddings]."""
    stack = lambda x, z: sparse.hstack([sparse.csr_matrix(x), sparse.csr_matrix(z * scale)]).tocsr()  # noqa: E731
    lr = LogisticRegression(max_iter=1000, C=classic[-1].C).fit(stack(x_train, z_train), y)
    return lr.predict_proba(stack(x_test, z_test))


def main() -> None:
    config, encoder, fractions, overrides = sys.argv[1], Path(sys.argv[2]), sys.argv[3], sys.argv[4:]
    cfg = load_config(config, ["finetune.evaluate_on=validation", *overrides])
    accelerator = make_accelerator(cfg, stage="finetune")
    spec = read_spec(encoder)
    data = labeled_data(cfg, spec, encoder)
    enc = load_encoder(encoder, expect_modality=spec["modality"])
    n_train, n_val = len(data.train_labels), len(data.test_labels)
    train_feats = M.embed(enc, data.dataset("train", np.arange(n_train)), data.input_keys, accelerator, 256)
    val_feats = M.embed(enc, data.dataset("test", np.arange(n_val)), data.input_keys, accelerator, 256)
    val_inputs = data.classic_inputs("test", np.arange(n_val))
    scores: dict[tuple[float, str], list[float]] = {}
    for fraction in (float(f) for f in fractions.split(",")):
        for seed in range(3):
            idx = balanced_subset(data.train_labels, data.num_classes, seed, fraction=fraction)
            y = data.train_labels[idx]
            probe = M.LinearProbe(train_feats[idx], y, data.num_classes, cfg.finetune.probe_c)
            classic = fitted_classic(data, idx)
            p_probe, p_classic = probe.clf.predict_proba(((val_feats - probe.mean) / probe.std).numpy()), \
                classic.predict_proba(val_inputs)
            out = {"linear_probe": p_probe, "classic": p_classic, "average": (p_probe + p_classic) / 2,
                   "log-sum": np.log(p_probe + 1e-12) + np.log(p_classic + 1e-12)}

            feats = (train_feats, val_feats)
            wp, wc = M.expert_weights(y, [lambda fit, held: probe_out_of_fold(idx, data, feats, cfg.finetune, fit, held),
                                          lambda fit, held: classic_out_of_fold(idx, data, fit, held)], seed)
            out["weighted (default)"] = wp * np.log(p_probe + 1e-12) + wc * np.log(p_classic + 1e-12)
            features = classic[:-1]  # the classic pipeline without its logistic regression
            x_train, x_val = features.transform(data.classic_inputs("train", idx)), features.transform(val_inputs)
            z_train = ((train_feats[idx] - probe.mean) / probe.std).numpy()
            z_val = ((val_feats - probe.mean) / probe.std).numpy()
            norm = lambda x: np.sqrt(np.asarray(sparse.csr_matrix(x).multiply(sparse.csr_matrix(x)).sum(1))).mean()  # noqa: E731
            for scale in (0.05, 0.1, 0.2, "eqnorm"):
                a = norm(x_train) / np.linalg.norm(z_train, axis=1).mean() if scale == "eqnorm" else scale
                out[f"one model, a={scale}"] = one_model(classic, x_train, x_val, z_train, z_val, y, a)
            for name, p in out.items():
                scores.setdefault((fraction, name), []).append(
                    100 * float((probe.clf.classes_[p.argmax(1)] == data.test_labels).mean()))
    print(f"{n_train} train / {n_val} validation examples, {data.num_classes} classes")
    for (fraction, name), acc in scores.items():
        print(f"{fraction:g}\t{name}\t{np.mean(acc):.1f} ± {np.std(acc, ddof=1):.1f}")


if __name__ == "__main__":
    main()
