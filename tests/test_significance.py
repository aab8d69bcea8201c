"""Bootstrap intervals of the label-efficiency report: planted gains are found significant, planted ties are not,
pairing over examples and seeds is used, and the verdict reaches the json, the md and the plot legend."""
import json

import numpy as np
import pytest

from ssl_pipeline.finetune.report import legend_label, write_report
from ssl_pipeline.finetune.significance import Bootstrap, pack_correct, unpack_correct

N_TEST = 2000


def _row(method, frac, seed, correct):
    return {"method": method, "label_fraction": frac, "n_labels": int(frac * 1000), "seed": seed,
            "accuracy": float(correct.mean()), "correct": pack_correct(correct)}


def _grid(gains_by_frac, seed=0):
    """supervised at 70-85 % on random examples; finetune = supervised plus `gain` of its wrong examples fixed."""
    rng = np.random.default_rng(seed)
    rows = []
    for frac, gain in gains_by_frac.items():
        for s in range(3):
            sup = rng.random(N_TEST) < 0.70 + 0.075 * np.log10(100 * frac)  # 70, 77.5, 85 %
            ssl = sup.copy()
            wrong = np.flatnonzero(~sup)
            ssl[rng.choice(wrong, int(gain * N_TEST), replace=False)] = True
            rows += [_row("supervised", frac, s, sup), _row("finetune", frac, s, ssl)]
    return rows


def test_pack_correct_round_trips_any_length():
    for n in (1, 7, 8, 9, 1001):
        c = np.random.default_rng(n).random(n) < 0.5
        assert np.array_equal(unpack_correct(pack_correct(c), n), c)


def test_planted_gain_is_significant_and_tie_is_not(tmp_path):
    rows = _grid({0.01: 0.05, 1.0: 0.0})
    doc = write_report(tmp_path, {"n_test": N_TEST, "task": "simclr"}, rows)
    by = {(g["method"], g["label_fraction"]): g for g in doc["significance"]}
    big, tie = by[("finetune", 0.01)], by[("finetune", 1.0)]
    assert big["significant"] and 0.03 < big["ci95"][0] <= 0.05 <= big["ci95"][1] < 0.07
    assert not tie["significant"] and tie["ci95"][0] <= 0 <= tie["ci95"][1]
    assert [d["seed"] for d in big["paired_differences"]] == [0, 1, 2]
    assert all(abs(d["difference"] - 0.05) < 1e-9 for d in big["paired_differences"])
    assert doc["bootstrap"]["over"] == "seeds and test examples"
    on_disk = json.loads((tmp_path / "label_efficiency.json").read_text())
    assert on_disk["gain_over_supervised"][0]["significant"] is True
    assert on_disk["gain_over_supervised"][1]["significant"] is False
    md = (tmp_path / "label_efficiency.md").read_text()
    assert "not significant" in md and "finetune at 100 % (+0.0" in md
    assert legend_label("finetune", 3, doc["significance"]) == "finetune — gain n.s. at 100 %"
    assert legend_label("supervised", 3, doc["significance"]) == "supervised"


def test_pairing_finds_a_small_consistent_gain_that_unpaired_intervals_would_miss():
    """+1 point on the same examples in every seed: the two accuracies' own intervals overlap, the paired
    difference's interval excludes 0."""
    rows = _grid({0.1: 0.01}, seed=3)
    boot = Bootstrap(rows, N_TEST)
    sup, ssl = boot.interval("supervised", 0.1), boot.interval("finetune", 0.1)
    assert ssl[0] < sup[1]  # the unpaired intervals overlap
    diff = boot.difference("finetune", "supervised", 0.1)
    assert diff["significant"] and diff["ci95"][0] > 0


def test_each_mean_lies_in_its_interval_and_the_multiplier_has_one(tmp_path):
    rows = _grid({0.01: 0.05, 0.1: 0.02, 1.0: 0.0}, seed=1)
    doc = write_report(tmp_path, {"n_test": N_TEST}, rows)
    for s in doc["summary"]:
        lo, hi = s["ci95"]
        assert lo <= s["mean"] <= hi and hi - lo < 0.1
    lm = doc["label_multiplier"]
    lo, hi = lm["ci95"]
    assert lo is not None and lo <= lm["multiplier"] and (hi is None or lm["multiplier"] <= hi)
    assert "95 % CI" in (tmp_path / "label_efficiency.md").read_text()


def test_rows_without_per_example_results_are_resampled_over_seeds_only(tmp_path):
    rows = [{k: v for k, v in r.items() if k != "correct"} for r in _grid({0.01: 0.05})]
    doc = write_report(tmp_path, {"n_test": N_TEST}, rows)
    assert doc["bootstrap"]["over"] == "seeds only"
    lo, hi = doc["gain_over_supervised"][0]["ci95"]
    per_seed = [d["difference"] for d in doc["gain_over_supervised"][0]["paired_differences"]]
    assert min(per_seed) - 1e-9 <= lo <= hi <= max(per_seed) + 1e-9
    assert "over seeds only" in (tmp_path / "label_efficiency.md").read_text()


def test_one_seed_still_gets_an_interval_from_the_test_examples(tmp_path):
    rows = [r for r in _grid({0.01: 0.05}) if r["seed"] == 0]
    doc = write_report(tmp_path, {"n_test": N_TEST}, rows)
    lo, hi = doc["gain_over_supervised"][0]["ci95"]
    assert 0 < lo < 0.05 < hi


def test_compare_merges_reports_with_one_shared_baseline(tmp_path, capsys):
    import pytest as _pytest

    from ssl_pipeline.errors import UserError
    from ssl_pipeline.finetune.compare import comparison, main, merged_rows

    rows = _grid({0.01: 0.05, 1.0: 0.0})
    a = {"task": "simclr", "data": "d", "n_test": N_TEST, "rows": rows}
    better = [dict(r, method="finetune") for r in _grid({0.01: 0.08, 1.0: 0.0}) if r["method"] == "finetune"]
    b = {"task": "dino", "data": "d", "n_test": N_TEST,
         "rows": better + [r for r in rows if r["method"] == "supervised"]}
    merged = merged_rows([a, b])
    assert {r["method"] for r in merged} == {"simclr:finetune", "dino:finetune", "supervised"}
    assert sum(r["method"] == "supervised" for r in merged) == 6  # taken once: 2 fractions x 3 seeds
    doc = comparison([a, b])
    g = {(x["method"], x["label_fraction"]): x for x in doc["gains"]}
    assert g[("dino:finetune", 0.01)]["significant"] and not g[("simclr:finetune", 1.0)]["significant"]
    for path, d in (("a.json", a), ("b.json", b)):
        (tmp_path / path).write_text(json.dumps(d))
    main([str(tmp_path / "a.json"), str(tmp_path / "b.json"), "--out", str(tmp_path / "cmp.md")])
    md = (tmp_path / "cmp.md").read_text()
    assert "| dino:finetune |" in md and "n.s." in md and (tmp_path / "cmp.json").is_file()
    other = dict(b, rows=[dict(r, accuracy=r["accuracy"] + 0.01) if r["method"] == "supervised" else r for r in b["rows"]])
    with _pytest.raises(UserError, match="cannot share a baseline"):
        merged_rows([a, other])
    with _pytest.raises(UserError, match="different data"):
        merged_rows([a, dict(b, n_test=5)])
    # two reports of the same method (two SimCLR runs): rows kept apart, named by their run, each its own mean
    rerun = dict(a, rows=[dict(r, accuracy=r["accuracy"] - 0.1) if r["method"] == "finetune" else r for r in rows])
    for run, d in (("run_a", a), ("run_b", rerun)):
        (tmp_path / run).mkdir()
        (tmp_path / run / "label_efficiency.json").write_text(json.dumps(d))
    main([str(tmp_path / "run_a" / "label_efficiency.json"), str(tmp_path / "run_b" / "label_efficiency.json"),
          "--out", str(tmp_path / "same.md")])
    same = json.loads((tmp_path / "same.json").read_text())
    mean = {(x["method"], x["label_fraction"]): x["mean"] for x in same["summary"]}
    assert set(m for m, _ in mean) == {"simclr:finetune (run_a)", "simclr:finetune (run_b)", "supervised"}
    assert mean[("simclr:finetune (run_a)", 0.01)] - mean[("simclr:finetune (run_b)", 0.01)] == _pytest.approx(0.1)


def test_compare_against_another_row_pairs_two_settings_of_one_method(tmp_path):
    """"Is setting B better than setting A?": every row's gain is measured from the chosen row, paired."""
    import pytest as _pytest

    from ssl_pipeline.errors import UserError
    from ssl_pipeline.finetune.compare import comparison, main

    rows = _grid({0.01: 0.05})
    a = {"task": "simclr", "data": "d", "n_test": N_TEST, "rows": rows}
    b = dict(a, rows=[dict(r, method="finetune") for r in _grid({0.01: 0.08}) if r["method"] == "finetune"])
    doc = comparison([a, b], ["run_a", "run_b"], against="simclr:finetune (run_a)")
    g = {x["method"]: x for x in doc["gains"]}
    assert set(g) == {"simclr:finetune (run_b)", "supervised"}  # every row but the reference itself
    mean = {s["method"]: s["mean"] for s in doc["summary"]}
    assert g["simclr:finetune (run_b)"]["gain"] == _pytest.approx(mean["simclr:finetune (run_b)"]
                                                                  - mean["simclr:finetune (run_a)"])
    assert g["supervised"]["gain"] < 0 and g["supervised"]["significant"]
    lo, hi = g["simclr:finetune (run_b)"]["ci95"]
    assert lo <= g["simclr:finetune (run_b)"]["gain"] <= hi
    for run, d in (("run_a", a), ("run_b", b)):
        (tmp_path / run).mkdir()
        (tmp_path / run / "label_efficiency.json").write_text(json.dumps(d))
    main([str(tmp_path / "run_a" / "label_efficiency.json"), str(tmp_path / "run_b" / "label_efficiency.json"),
          "--against", "simclr:finetune (run_a)", "--out", str(tmp_path / "ab.md")])
    assert "gain over `simclr:finetune (run_a)`" in (tmp_path / "ab.md").read_text()
    with _pytest.raises(UserError, match="not a row of these reports"):
        comparison([a, b], ["run_a", "run_b"], against="dino:finetune")


def test_balanced_accuracy_is_scikit_learns_and_its_interval_holds_it(tmp_path):
    """On an imbalanced split (90 % one class) a model that answers the large class everywhere has 90 % accuracy and
    50 % balanced accuracy; a model right on half of each class has 50 % of both. The report scores the chosen metric
    from the same per-example results, and keeps each row's plain accuracy."""
    from sklearn.metrics import balanced_accuracy_score

    from ssl_pipeline.finetune.significance import balanced_weights, pack_labels, unpack_labels

    labels = np.array([0] * 1800 + [1] * 200)
    majority = labels == 0  # right on every example of class 0, wrong on class 1
    rng = np.random.default_rng(0)
    half = rng.random(N_TEST) < 0.5
    assert np.array_equal(unpack_labels(pack_labels(labels)), labels)
    pred = np.where(half, labels, 1 - labels)
    assert abs(balanced_weights(labels) @ half - balanced_accuracy_score(labels, pred)) < 1e-12
    rows = [_row("supervised", 1.0, s, majority) for s in range(3)] + [_row("finetune", 1.0, s, half) for s in range(3)]
    header = {"n_test": N_TEST, "task": "simclr", "test_labels": pack_labels(labels), "class_names": ["big", "small"]}
    plain = write_report(tmp_path, header, rows)
    assert {s["method"]: round(s["mean"], 3) for s in plain["summary"]} == {"supervised": 0.9,
                                                                            "finetune": round(half.mean(), 3)}
    assert any("imbalanced (largest 'big' 90% of the examples, smallest 'small' 10.0%)" in f for f in plain["findings"])
    doc = write_report(tmp_path, {**header, "metric": "balanced_accuracy"}, rows)
    means = {s["method"]: s for s in doc["summary"]}
    assert abs(means["supervised"]["mean"] - 0.5) < 1e-12
    assert abs(means["finetune"]["mean"] - balanced_accuracy_score(labels, pred)) < 1e-12
    lo, hi = means["finetune"]["ci95"]
    assert lo < means["finetune"]["mean"] < hi and hi - lo < 0.1
    assert doc["metric"] == "balanced_accuracy" and doc["rows"][0]["accuracy"] == 0.9  # rows keep plain accuracy
    assert not any("imbalanced" in f for f in doc["findings"])
    from ssl_pipeline.finetune.report import imbalance

    rare = {**header, "test_labels": pack_labels(np.array([0] * 6510 + [1] * 3))}  # WordNet's 'motive': 3 of 6,513
    assert "smallest 'small' 3 of 6,513)" in imbalance(rare)[0]  # not "0.0%"
    assert "Test balanced accuracy (mean recall over classes) (%)" in (tmp_path / "label_efficiency.md").read_text()
    from ssl_pipeline.errors import UserError

    with pytest.raises(UserError, match="balanced_accuracy needs the per-example results"):
        write_report(tmp_path, {**header, "metric": "balanced_accuracy", "test_labels": None}, rows)


def test_compare_scores_balanced_accuracy_from_the_kept_labels(tmp_path, capsys):
    from sklearn.metrics import balanced_accuracy_score

    from ssl_pipeline.errors import UserError
    from ssl_pipeline.finetune.compare import comparison, main
    from ssl_pipeline.finetune.significance import pack_labels

    labels = np.array([0] * 1800 + [1] * 200)
    majority, right_on_small = labels == 0, labels == 1
    head = {"data": "d", "n_test": N_TEST, "test_labels": pack_labels(labels)}
    sup = [_row("supervised", 0.1, s, majority) for s in range(3)]
    a = {**head, "task": "simclr", "rows": [_row("finetune", 0.1, s, majority) for s in range(3)] + sup}
    b = {**head, "task": "dino", "rows": [_row("finetune", 0.1, s, right_on_small) for s in range(3)] + sup}
    plain = {s["method"]: s["mean"] for s in comparison([a, b])["summary"]}
    balanced = {s["method"]: s["mean"] for s in comparison([a, b], metric="balanced_accuracy")["summary"]}
    assert plain == pytest.approx({"simclr:finetune": 0.9, "dino:finetune": 0.1, "supervised": 0.9})
    assert balanced == pytest.approx({"simclr:finetune": 0.5, "dino:finetune": 0.5, "supervised": 0.5})
    assert balanced["dino:finetune"] == pytest.approx(balanced_accuracy_score(labels, labels * 0 + 1))
    for name, d in (("a.json", a), ("b.json", b)):
        (tmp_path / name).write_text(json.dumps(d))
    main([str(tmp_path / "a.json"), str(tmp_path / "b.json"), "--metric", "balanced_accuracy"])
    assert capsys.readouterr().out.startswith("Balanced accuracy (mean recall over classes) (%)")
    with pytest.raises(UserError, match="same scored labels"):
        comparison([a, dict(b, test_labels=None)], metric="balanced_accuracy")


def test_a_scored_split_of_few_examples_is_named_with_what_one_example_weighs(tmp_path):
    """121 photos, a carved test split of 24: every gain was 'not significant' and nothing said why."""
    rng = np.random.default_rng(0)

    def rows(n):
        return [{"method": m, "label_fraction": 0.1, "n_labels": 9, "seed": s,
                 "accuracy": float((c := rng.random(n) < p).mean()), "correct": pack_correct(c)}
                for m, p in (("finetune", 0.75), ("supervised", 0.7)) for s in range(3)]

    small = write_report(tmp_path, {"n_test": 24, "evaluated_on": "test"}, rows(24), plot=False)
    said = [f for f in small["findings"] if "holds only 24 examples" in f]
    assert len(said) == 1 and "4.2 points" in said[0] and "data.test_fraction" in said[0]
    assert "holds only 24 examples" in (tmp_path / "label_efficiency.md").read_text()
    carve = write_report(tmp_path, {"n_test": 60, "evaluated_on": "validation"}, rows(60), plot=False)
    assert any("validation carve holds only 60" in f and "finetune.validation_fraction" in f for f in carve["findings"])
    big = write_report(tmp_path, {"n_test": 500, "evaluated_on": "test"}, rows(500), plot=False)
    assert not any("holds only" in f for f in big["findings"])
