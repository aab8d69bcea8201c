"""Label efficiency vs pretraining step: kept checkpoints are exported faithfully, each gets a grid, and the curve
report says where each curve peaks and whether the last step is significantly worse."""
import json

import numpy as np
import pytest
from safetensors.torch import load_file

from ssl_pipeline.cli import finetune_main, pretrain_main
from ssl_pipeline.finetune.checkpoint_curve import stopping_points
from ssl_pipeline.finetune.significance import pack_correct

BASE = ["--config", "configs/vision/simclr_digits.yaml", "pretrain.max_steps=4", "pretrain.batch_size=32",
        "pretrain.checkpoint_every=2", "pretrain.keep_checkpoints=3", "model.projection_hidden_dim=32"]
FT = ["finetune.methods=[knn]", "finetune.seeds=[0,1]", "finetune.label_fractions=[0.1,1.0]"]


def test_all_checkpoints_are_exported_scored_and_put_on_one_curve(tmp_path, capsys):
    out = tmp_path / "run"
    pretrain_main(BASE + [f"output_dir={out}"])
    finetune_main(BASE + FT + [f"output_dir={out}", "finetune.checkpoints=[all]"])
    # the last checkpoint's export is the final encoder, weight for weight
    last, final = (load_file(str(p / "model.safetensors")) for p in (out / "checkpoint_encoders" / "step_0000004",
                                                                         out / "encoder"))
    assert last.keys() == final.keys() and all(np.array_equal(last[k].numpy(), final[k].numpy()) for k in last)
    first = load_file(str(out / "checkpoint_encoders" / "step_0000002" / "model.safetensors"))
    assert any(not np.array_equal(first[k].numpy(), last[k].numpy()) for k in last)
    doc = json.loads((out / "checkpoint_curve.json").read_text())
    assert doc["steps"] == [2, 4] and len(doc["points"]) == 4  # 2 steps x 1 method x 2 fractions
    assert {(p["step"], p["label_fraction"]) for p in doc["points"]} == {(2, 0.1), (2, 1.0), (4, 0.1), (4, 1.0)}
    assert len(doc["stopping"]) == 2 and all(s["best_step"] in (2, 4) for s in doc["stopping"])
    md = (out / "checkpoint_curve.md").read_text()
    assert "| knn @ 10 % |" in md and "step 2 | step 4" in md and "When to stop" in md
    assert doc["evaluated_on"] == "test" and "read off the test split" in md  # not a step to choose by
    assert (out / "checkpoint_curve.png").stat().st_size > 0
    assert (out / "checkpoint_curve" / "step_0000002" / "label_efficiency.json").is_file()
    # a re-run exports nothing again and finds every cell done
    capsys.readouterr()
    finetune_main(BASE + FT + [f"output_dir={out}", "finetune.checkpoints=[all]"])
    log = capsys.readouterr()
    assert "exported checkpoint" not in log.out + log.err and "already done" in log.out + log.err
    # named encoders work too
    finetune_main(BASE + FT + [f"output_dir={tmp_path / 'named'}", f"finetune.checkpoints=[{out / 'checkpoint_encoders' / 'step_0000002'},{out / 'encoder'}]"])
    assert json.loads((tmp_path / "named" / "checkpoint_curve.json").read_text())["steps"] == [2, 1]


def _doc(step_acc: dict, n=2000, seed=0):
    rng = np.random.default_rng(seed)
    base = rng.random(n)
    rows = []
    for s in (0, 1, 2):
        correct = base < step_acc + 0.002 * s
        rows.append({"method": "finetune", "label_fraction": 0.01, "n_labels": 10, "seed": s,
                     "accuracy": float(correct.mean()), "correct": pack_correct(correct)})
    return {"rows": rows, "n_test": n, "summary": [{"method": "finetune", "label_fraction": 0.01, "n_labels": 10,
                                                    "mean": float(np.mean([r["accuracy"] for r in rows])),
                                                    "std": 0.0, "seeds": 3}]}


def test_the_last_step_is_called_significantly_worse_only_when_it_is():
    worse = stopping_points([{"step": 100, "encoder": "a", "doc": _doc(0.80)},
                             {"step": 200, "encoder": "b", "doc": _doc(0.70)}])[0]
    assert worse["best_step"] == 100 and worse["last_step"] == 200 and worse["significant"]
    assert worse["last_minus_best"] == pytest.approx(-0.10, abs=0.02)
    tie = stopping_points([{"step": 100, "encoder": "a", "doc": _doc(0.801)},
                           {"step": 200, "encoder": "b", "doc": _doc(0.80)}])[0]
    assert tie["best_step"] == 100 and not tie["significant"]


def test_a_curve_scored_on_validation_carries_no_test_caveat(tmp_path):
    from ssl_pipeline.finetune.checkpoint_curve import write_curve

    results = [{"step": s, "encoder": str(s), "doc": {**_doc(acc), "evaluated_on": "validation"}}
               for s, acc in ((100, 0.80), (200, 0.78))]
    doc = write_curve(tmp_path, results)
    assert doc["evaluated_on"] == "validation"
    assert "read off the test split" not in (tmp_path / "checkpoint_curve.md").read_text()
