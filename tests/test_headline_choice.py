"""The SSL row a test report headlines is chosen on the validation carve when the user ran one for this encoder, and
said to be chosen on test (a flattering choice) otherwise."""
import json

import numpy as np

from ssl_pipeline.finetune.choice import validation_ranking
from ssl_pipeline.finetune.report import write_report
from ssl_pipeline.finetune.significance import pack_correct

N = 1000


def _rows(means: dict, fracs=(0.01, 0.1), seeds=3, seed=0, settings=None):
    """Rows whose accuracy per (method, fraction) is `means[method]` (+ 0.1 per fraction step), on random examples."""
    rng = np.random.default_rng(seed)
    rows = []
    for i, frac in enumerate(fracs):
        for s in range(seeds):
            for method, mean in means.items():
                correct = rng.random(N) < mean + 0.1 * i
                row = {"method": method, "label_fraction": frac, "n_labels": int(frac * 1800), "seed": s,
                       "accuracy": float(correct.mean()), "correct": pack_correct(correct)}
                if settings and method in settings:
                    row["settings"] = settings[method]
                rows.append(row)
    return rows


TEST = {"finetune": 0.66, "linear_probe": 0.60, "supervised": 0.50}  # finetune best on test


def test_without_a_validation_run_the_best_on_test_is_headlined_and_the_report_says_so(tmp_path):
    doc = write_report(tmp_path, {"n_test": N, "evaluated_on": "test"}, _rows(TEST), plot=False)
    assert [g["best_ssl_method"] for g in doc["gain_over_supervised"]] == ["finetune", "finetune"]
    assert {g["chosen_on"] for g in doc["gain_over_supervised"]} == {"this_split"}
    assert doc["label_multiplier"]["chosen_on"] == "this_split"
    md = (tmp_path / "label_efficiency.md").read_text()
    assert "flatters it" in md and "finetune.evaluate_on=validation" in md


def test_a_single_ssl_row_needs_no_caveat(tmp_path):
    rows = _rows({"finetune": 0.66, "supervised": 0.5})
    doc = write_report(tmp_path, {"n_test": N, "evaluated_on": "test"}, rows, plot=False)
    assert {g["chosen_on"] for g in doc["gain_over_supervised"]} == {"only"}
    assert "flatters" not in (tmp_path / "label_efficiency.md").read_text()


def test_the_validation_ranking_chooses_the_headline_even_where_test_disagrees(tmp_path):
    choice = {"report": "runs/x/validation/label_efficiency.json",
              "fractions": [{"label_fraction": 0.01, "n_labels": 16, "ranking": ["linear_probe", "finetune"]}]}
    doc = write_report(tmp_path, {"n_test": N, "evaluated_on": "test", "ssl_choice": choice}, _rows(TEST), plot=False)
    at = {g["label_fraction"]: g for g in doc["gain_over_supervised"]}
    assert at[0.01]["best_ssl_method"] == "linear_probe" and at[0.01]["chosen_on"] == "validation"
    assert abs(at[0.01]["gain"] - 0.10) < 0.05  # linear_probe's own gain, not finetune's 0.16
    assert at[0.1]["best_ssl_method"] == "finetune" and at[0.1]["chosen_on"] == "this_split"  # not in the validation run
    lm = doc["label_multiplier"]
    assert lm["ssl_method"] == "linear_probe" and lm["chosen_on"] == "validation"
    assert doc["gain_over_best_baseline"][0]["best_ssl_method"] == "linear_probe"
    md = (tmp_path / "label_efficiency.md").read_text()
    assert "At 1 % the SSL row these gains and the label multiplier name was chosen on the validation carve" in md
    assert "runs/x/validation/label_efficiency.json" in md
    assert "At 10 % the SSL row these gains and the label multiplier name is the best of several on this test" in md


def test_a_per_class_budget_matches_its_validation_twin_by_label_count(tmp_path):
    """`finetune.labels_per_class` gives the same n_labels on both carves but different fractions of the pool."""
    choice = {"report": "v.json", "fractions": [{"label_fraction": 0.0123, "n_labels": 18, "ranking": ["linear_probe"]}]}
    doc = write_report(tmp_path, {"n_test": N, "ssl_choice": choice}, _rows(TEST, fracs=(0.01,)), plot=False)
    assert doc["gain_over_supervised"][0]["best_ssl_method"] == "linear_probe"


def _validation_doc(tmp_path, rows, sha="abc", evaluated_on="validation"):
    path = tmp_path / "validation" / "label_efficiency.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"encoder_sha1": sha, "evaluated_on": evaluated_on, "n_test": N, "rows": rows}))
    return path


def test_validation_ranking_reads_the_users_validation_run_of_this_encoder_only(tmp_path):
    val = {"finetune": 0.55, "linear_probe": 0.61, "knn": 0.40, "supervised": 0.9}  # a baseline is never ranked
    path = _validation_doc(tmp_path, _rows(val, seed=5))
    ranking = validation_ranking(path, "abc", "accuracy", lambda m: {})
    assert [e["ranking"] for e in ranking["fractions"]] == [["linear_probe", "finetune", "knn"]] * 2
    assert ranking["report"] == str(path) and [e["label_fraction"] for e in ranking["fractions"]] == [0.01, 0.1]
    assert validation_ranking(path, "another encoder", "accuracy", lambda m: {}) is None
    assert validation_ranking(tmp_path / "missing.json", "abc", "accuracy", lambda m: {}) is None
    (tmp_path / "bad.json").write_text("{not json")
    assert validation_ranking(tmp_path / "bad.json", "abc", "accuracy", lambda m: {}) is None
    assert validation_ranking(_validation_doc(tmp_path, _rows(val), evaluated_on="test"), "abc", "accuracy",
                              lambda m: {}) is None


def test_a_row_made_with_other_settings_is_not_ranked(tmp_path):
    """A fixmatch row of the validation run made with 32 passes says nothing about this run's 8-pass fixmatch."""
    val = {"finetune": 0.55, "fixmatch": 0.70}
    path = _validation_doc(tmp_path, _rows(val, settings={"fixmatch": {"fixmatch": {"epochs": 32}}}))
    now = {"fixmatch": {"fixmatch": {"epochs": 8}}}
    ranking = validation_ranking(path, "abc", "accuracy", lambda m: now.get(m, {}))
    assert ranking["fractions"][0]["ranking"] == ["finetune"]
    same = validation_ranking(path, "abc", "accuracy", lambda m: {"fixmatch": {"fixmatch": {"epochs": 32}}}.get(m, {}))
    assert same["fractions"][0]["ranking"] == ["fixmatch", "finetune"]
