"""probe_classic: the SSL probe and the classic baseline together, compared with classic alone — what the encoder adds
to what the user would otherwise use — and never headlined as an SSL row."""
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

from ssl_pipeline.config import load_config
from ssl_pipeline.finetune import methods as M
from ssl_pipeline.finetune.report import write_report
from ssl_pipeline.finetune.runner import row_settings, run_cell
from ssl_pipeline.finetune.significance import pack_correct

N_TEST = 2000


def _two_views(seed=0, n=300, classes=3):
    """Labels with two independent noisy views: embeddings (the probe's) and 'classic' features."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    centres_a, centres_b = rng.normal(size=(classes, 8)), rng.normal(size=(classes, 5))
    a = centres_a[y] + 1.2 * rng.normal(size=(n, 8))
    b = centres_b[y] + 1.2 * rng.normal(size=(n, 5))
    return y, torch.tensor(a, dtype=torch.float32), b


def test_the_product_of_experts_is_the_argmax_of_the_summed_log_probabilities():
    y, emb, classic_x = _two_views()
    train, test = np.arange(150), np.arange(150, 300)
    probe = M.LinearProbe(emb[train], y[train], 3, c=0.1)
    classic = LogisticRegression(max_iter=500).fit(classic_x[train], y[train])
    got = M.product_of_experts(probe, emb[test], classic, classic_x[test])
    log_p = probe.clf.predict_log_proba(((emb[test] - probe.mean) / probe.std).numpy()) + \
        classic.predict_log_proba(classic_x[test])
    assert np.array_equal(got, log_p.argmax(1))
    # two independent views of the label: together they are more accurate than either alone
    together, alone = (got == y[test]).mean(), max((probe.predict(emb[test]) == y[test]).mean(),
                                                    (classic.predict(classic_x[test]) == y[test]).mean())
    assert together > alone
    # an expert without an opinion (uniform over the classes) leaves every decision to the other
    no_opinion = SimpleNamespace(classes_=probe.clf.classes_, predict_log_proba=lambda x: np.full((len(x), 3), -np.log(3)))
    assert np.array_equal(M.product_of_experts(probe, emb[test], no_opinion, classic_x[test]), probe.predict(emb[test]))


def test_a_probe_and_a_classic_model_of_other_classes_are_refused():
    y, emb, classic_x = _two_views()
    probe = M.LinearProbe(emb[:100], y[:100], 3, c=0.1)
    two = np.isin(y, (0, 1))
    classic = LogisticRegression(max_iter=500).fit(classic_x[two], y[two])
    with pytest.raises(ValueError, match="different classes"):
        M.product_of_experts(probe, emb, classic, classic_x)


class _CountingData:
    """The part of a labeled dataset the frozen-embedding rows read, counting classic fits."""

    def __init__(self):
        self.train_labels, emb, self.x = _two_views(seed=1)
        self.test_labels = self.train_labels[200:]
        self.train_labels = self.train_labels[:200]
        self.features = (emb[:200], emb[200:])
        self.num_classes, self.fits = 3, 0

    def classic_model(self):
        data = self

        class Counting(LogisticRegression):
            def fit(self, x, y):
                data.fits += 1
                return super().fit(x, y)

        return Counting(max_iter=500)

    def classic_inputs(self, split, idx):
        return (self.x[:200] if split == "train" else self.x[200:])[idx]


def test_the_grid_fits_a_subsets_classic_model_once_for_both_rows():
    data, cache = _CountingData(), {}
    cfg = load_config("configs/vision/simclr_digits.yaml")
    idx = np.arange(0, 200, 4)

    def cell(method, subset=idx):
        return run_cell(method, subset, data, data.features, cfg, None, None, 0, 1.0, probes=cache)

    classic = cell("classic")
    assert data.fits == 1
    combined = cell("probe_classic")
    assert data.fits == 1 + M.EXPERT_FOLDS  # the classic row's model serves it; the folds choose the weights
    probe = M.LinearProbe(data.features[0][idx], data.train_labels[idx], 3, cfg.finetune.probe_c)
    fitted = LogisticRegression(max_iter=500).fit(data.x[idx], data.train_labels[idx])
    assert np.array_equal(classic, fitted.predict(data.x[200:]))
    weights = M.expert_weights(data.train_labels[idx], [_oof_probe(data, idx, cfg), _oof_classic(data, idx)], seed=0)
    assert np.array_equal(combined, M.product_of_experts(probe, data.features[1], fitted, data.x[200:], weights))
    cell("probe_classic", idx[1:])  # another subset: its own model
    assert data.fits == 2 + 2 * M.EXPERT_FOLDS


def _oof_probe(data, idx, cfg):
    def expert(fit, held):
        p = M.LinearProbe(data.features[0][idx[fit]], data.train_labels[idx[fit]], 3, cfg.finetune.probe_c)
        return p.clf.classes_, p.log_proba(data.features[0][idx[held]])
    return expert


def _oof_classic(data, idx):
    def expert(fit, held):
        m = LogisticRegression(max_iter=500).fit(data.x[idx[fit]], data.train_labels[idx[fit]])
        return m.classes_, m.predict_log_proba(data.x[idx[held]])
    return expert


def _expert(y, informative: bool, rng):
    """An expert whose log-probabilities point at the true class (informative), or at random classes, confidently."""
    def expert(fit, held):
        guess = y[held] if informative else rng.integers(0, 3, len(held))
        log_p = np.full((len(held), 3), np.log(0.05))
        log_p[np.arange(len(held)), guess] = np.log(0.9)
        return np.arange(3), log_p
    return expert


def test_expert_weights_damp_a_confident_expert_that_is_wrong():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 10)
    low, high = min(M.EXPERT_WEIGHTS), max(M.EXPERT_WEIGHTS)
    assert M.expert_weights(y, [_expert(y, True, rng), _expert(y, False, rng)], seed=0) == (high, low)
    assert M.expert_weights(y, [_expert(y, False, rng), _expert(y, True, rng)], seed=0) == (low, high)
    # two experts reading independent views of the label: both are kept
    labels, emb, x = _two_views(seed=2, n=90)
    data = SimpleNamespace(features=(emb, None), train_labels=labels, x=x)
    cfg = load_config("configs/vision/simclr_digits.yaml")
    idx = np.arange(90)
    w = M.expert_weights(labels, [_oof_probe(data, idx, cfg), _oof_classic(data, idx)], seed=0)
    assert w[0] > 0 and w[1] > 0
    # one label per class: nothing can be held out to weigh them by, so they count equally
    assert M.expert_weights(np.arange(3), [_expert(y, True, rng), _expert(y, False, rng)], seed=0) == (1.0, 1.0)


def test_text_rows_carry_the_classic_settings_they_were_made_with():
    text, vision = load_config("configs/text/mlm_embedded.yaml"), load_config("configs/vision/simclr_digits.yaml")
    assert row_settings(text, "probe_classic") == row_settings(text, "classic") == \
        {"classic": {"text_features": text.finetune.classic.text_features}}
    assert row_settings(vision, "probe_classic") == {}
    assert "probe_classic" in text.finetune.methods  # a default row: cheap (the probe's and classic's models)


def _row(method, frac, seed, correct):
    return {"method": method, "label_fraction": frac, "n_labels": int(frac * 1000), "seed": seed,
            "accuracy": float(correct.mean()), "correct": pack_correct(correct)}


def _grid():
    """supervised < linear_probe < classic < probe_classic at 1 %; at 100 % probe_classic ties classic."""
    rng = np.random.default_rng(0)
    rows = []
    for frac, accs in {0.01: (0.60, 0.64, 0.70, 0.75), 1.0: (0.80, 0.78, 0.90, 0.90)}.items():
        for s in range(3):
            base = rng.random(N_TEST)
            for method, acc in zip(("supervised", "linear_probe", "classic", "probe_classic"), accs):
                rows.append(_row(method, frac, s, base < acc))
    return rows


def test_the_combined_row_is_compared_with_classic_and_never_headlined(tmp_path):
    doc = write_report(tmp_path, {"n_test": N_TEST, "task": "mlm"}, _grid())
    # the SSL headline, its multipliers and gains name the SSL row, never the one half made of TF-IDF
    assert {g["best_ssl_method"] for g in doc["gain_over_supervised"] + doc["gain_over_best_baseline"]} == \
        {"linear_probe"}
    assert doc["label_multiplier"]["ssl_method"] == "linear_probe"
    assert all(b["method"] != "probe_classic" for b in doc["best_baseline"])
    assert all(g["method"] != "probe_classic" for g in doc["significance"])
    added = {g["label_fraction"]: g for g in doc["gain_of_combined"]}
    assert added[0.01]["baseline"] == "classic" and added[0.01]["significant"]
    assert added[0.01]["gain"] == pytest.approx(0.05, abs=0.015)
    assert not added[1.0]["significant"]
    # and what classic adds to the probe alone (it can take away: pixels beside a good probe)
    assert added[0.01]["over_ssl"]["method"] == "linear_probe" and added[0.01]["over_ssl"]["significant"]
    assert added[0.01]["over_ssl"]["gain"] == pytest.approx(0.11, abs=0.015)
    md = (tmp_path / "label_efficiency.md").read_text()
    assert "What the encoder adds to the baseline" in md and "1 % labels: probe_classic 7" in md
    assert "against linear_probe alone (6" in md
    found = " ".join(doc["findings"])
    assert "classic beats every SSL method at 1 %" in found and "but together with it the encoder adds +" in found
    assert "together with it (probe_classic) the encoder adds nothing significant" in found  # at 100 %


def test_compare_measures_the_combined_row_against_classic_only_when_asked():
    from ssl_pipeline.finetune.compare import comparison

    doc = {"task": "mlm", "data": "d", "n_test": N_TEST, "rows": _grid()}
    plain = comparison([doc])
    assert {g["method"] for g in plain["gains"]} == {"mlm:linear_probe"}  # vs supervised: the SSL row only
    assert set(plain["label_multiplier"]) == {"mlm:linear_probe"}
    added = {g["label_fraction"]: g for g in comparison([doc], against="classic")["gains"]
             if g["method"] == "mlm:probe_classic"}
    assert added[0.01]["significant"] and added[0.01]["gain"] == pytest.approx(0.05, abs=0.015)
