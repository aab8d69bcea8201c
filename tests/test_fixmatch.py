"""fixmatch: the labeled subset plus the unlabeled train pool (its labels dropped, the test split never seen);
confident pseudo-labels only; one DDP forward per step (2 processes); vision and text end to end."""
import json
import re
from contextlib import nullcontext
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from conftest import SMALL_TEXT_MODEL, read_metrics, run_stage
from ssl_pipeline.cli import finetune_main, pretrain_main

BASE = ["--config", "configs/vision/simclr_digits.yaml", "pretrain.max_steps=4", "pretrain.batch_size=32",
        "model.projection_hidden_dim=32"]
FT = ["finetune.seeds=[0]", "finetune.label_fractions=[0.1]", "finetune.min_steps=4", "finetune.max_steps=4",
      "finetune.batch_size=64", "finetune.fixmatch.epochs=1", "finetune.methods=[fixmatch]"]


@pytest.fixture(scope="module")
def ssl_encoder(tmp_path_factory):
    """One tiny SimCLR encoder for the module's grids (each test writes its report to its own directory)."""
    out = tmp_path_factory.mktemp("ssl") / "run"
    pretrain_main(BASE + [f"output_dir={out}"])
    return out / "encoder"


class Items(torch.utils.data.Dataset):
    """Example i is the image filled with value i and label i % 3."""

    def __init__(self, ids):
        self.ids = list(ids)

    def __len__(self):
        return len(self.ids)

    def __getitems__(self, idx):
        ids = torch.as_tensor([self.ids[i] for i in idx], dtype=torch.float32)
        return {"images": ids.view(-1, 1, 1, 1).expand(-1, 1, 2, 2).clone(), "labels": ids.long() % 3}


def test_labeled_batches_come_from_the_subset_and_the_pool_loses_its_labels():
    from ssl_pipeline.finetune.fixmatch import PoolWithLabeled

    subset = [3, 7, 11, 20, 21]
    ds = PoolWithLabeled(Items(range(30)), Items(subset), labeled_batch=2, seed=0)
    seen = []
    for start in range(0, 10, 2):
        batch = ds.__getitems__([start, start + 1])
        assert "labels" not in batch["unlabeled"]  # the pool is unlabeled, whatever its source knows
        assert batch["unlabeled"]["images"][:, 0, 0, 0].tolist() == [start, start + 1]
        seen += batch["labeled"]["images"][:, 0, 0, 0].long().tolist()
        assert torch.equal(batch["labeled"]["labels"], batch["labeled"]["images"][:, 0, 0, 0].long() % 3)
    assert set(seen) == set(subset) and set(seen[:5]) == set(subset)  # every labeled example once per round


def _task(threshold):
    from ssl_pipeline.finetune.fixmatch import FixMatchTask

    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    data = SimpleNamespace(train_transform=lambda b: b, input_keys=("images",),
                           strong_transform=lambda b: {**b, "images": b["images"].flip(-1)})
    task = FixMatchTask(None, None, data, 1, threshold, unlabeled_weight=1.0)
    batch = {"labeled": {"images": torch.randn(4, 1, 4, 4), "labels": torch.tensor([0, 1, 2, 0])},
             "unlabeled": {"images": torch.randn(12, 1, 4, 4)}}
    return task, net, task.prepare(batch)  # the views, as the engine makes them before the loss


def test_only_confident_pool_examples_teach_and_their_strong_view_learns_the_weak_views_label():
    import torch.nn.functional as F

    acc = SimpleNamespace(autocast=nullcontext)
    task, net, batch = _task(threshold=1.01)  # no prediction is that confident: the labeled loss alone
    loss, extra = task.loss(lambda b: net(b["images"]), batch, acc)
    assert float(extra["confident"]) == 0.0 and float(extra["pseudo_loss"]) == 0.0
    assert torch.isclose(loss, F.cross_entropy(net(batch["labeled"]["images"]), batch["labeled"]["labels"]))

    task, net, batch = _task(threshold=0.0)  # every pool example teaches
    loss, extra = task.loss(lambda b: net(b["images"]), batch, acc)
    u = batch["unlabeled"]["images"]
    expected = F.cross_entropy(net(u.flip(-1)), net(u).argmax(-1))  # strong view -> the weak view's label
    assert float(extra["confident"]) == 1.0
    assert torch.isclose(extra["pseudo_loss"], expected.detach())
    loss.backward()  # one graph over labeled + strong views
    assert net[1].weight.grad is not None


def test_flexmatch_thresholds_start_low_and_follow_how_many_examples_each_class_holds():
    from ssl_pipeline.finetune.fixmatch import ClassThresholds

    t = ClassThresholds(pool_size=10, num_classes=3, threshold=0.9)
    conf, pseudo = torch.tensor([0.2, 0.5, 0.95]), torch.tensor([0, 1, 2])
    assert t.mask(conf, pseudo).all()  # warm-up: nothing held yet, every threshold is 0
    # examples 0-3 sure of class 0, 4-5 of class 1; 6 not sure enough to be held; 7-9 never seen
    t.update(torch.arange(7), torch.tensor([0.95] * 6 + [0.5]), torch.tensor([0, 0, 0, 0, 1, 1, 2]))
    assert t.held.tolist() == [0, 0, 0, 0, 1, 1, -1, -1, -1, -1]
    # beta = held / max(largest class 4, unheld 4) = [1, 0.5, 0]; threshold * beta / (2 - beta)
    assert torch.allclose(t.per_class(), torch.tensor([0.9, 0.3, 0.0]))
    assert t.mask(torch.tensor([0.85, 0.85, 0.01]), torch.tensor([0, 1, 2])).tolist() == [False, True, True]
    t.update(torch.tensor([7, 8, 9, 6]), torch.tensor([0.99] * 4), torch.tensor([2, 2, 2, 0]))
    # past the warm-up (nothing unheld): over the largest class (5 of class 0)
    assert torch.allclose(t.per_class(), 0.9 * torch.tensor([1.0, 0.4 / 1.6, 0.6 / 1.4]))
    t.update(torch.tensor([0]), torch.tensor([0.3]), torch.tensor([2]))  # an unsure prediction changes nothing
    assert t.held[0] == 0


def test_flexmatch_task_teaches_with_every_confident_enough_example_and_remembers_the_sure_ones():
    from ssl_pipeline.finetune.fixmatch import ClassThresholds

    acc = SimpleNamespace(autocast=nullcontext, num_processes=1)
    task, net, batch = _task(threshold=0.999)
    task.class_thresholds = ClassThresholds(pool_size=40, num_classes=3, threshold=0.5)
    batch["pool_index"] = torch.arange(20, 32)
    _, extra = task.loss(lambda b: net(b["images"]), batch, acc)
    assert float(extra["confident"]) == 1.0  # warm-up: all of them, where the fixed 0.999 would take none
    probs = net(batch["unlabeled"]["images"]).softmax(-1)
    sure = probs.max(-1).values >= 0.5
    held = task.class_thresholds.held
    assert 0 < int(sure.sum()) < 12 and (held[:20] == -1).all() and (held[32:] == -1).all()
    assert torch.equal(held[20:32][sure], probs.argmax(-1)[sure]) and (held[20:32][~sure] == -1).all()


def test_ema_scores_the_moving_average_of_weights_and_batchnorm_statistics():
    from ssl_pipeline.finetune.fixmatch import FixMatchTask

    def task_of(decay):
        net = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
        return FixMatchTask(net, Items(range(4)), SimpleNamespace(train_transform=None), 1, 0.9, 1.0, decay), net

    task, net = task_of(0.0)
    task.after_optimizer_step(net, 1, 3)
    assert task.scored_model() is net  # off: the trained weights themselves

    task, net = task_of(0.75)
    with torch.no_grad():
        net[0].weight.fill_(1.0)
        net[1].running_mean.fill_(1.0)
    task.after_optimizer_step(net, 1, 3)  # the average starts from the weights after the first step
    with torch.no_grad():
        net[0].weight.fill_(5.0)
        net[1].running_mean.fill_(5.0)
    task.after_optimizer_step(net, 2, 3)
    scored = task.scored_model()
    assert scored is not net and torch.allclose(scored[0].weight, torch.full((2, 2), 2.0))  # 0.75 * 1 + 0.25 * 5
    assert torch.allclose(scored[1].running_mean, torch.full((2,), 2.0))
    assert torch.equal(net[0].weight, torch.full((2, 2), 5.0))  # the trained model is left as it is


def test_token_batches_of_different_widths_are_joined_with_a_masked_pad():
    from ssl_pipeline.finetune.fixmatch import concat_inputs

    a = {"input_ids": torch.ones(2, 3, dtype=torch.long), "attention_mask": torch.ones(2, 3, dtype=torch.long)}
    b = {"input_ids": torch.full((1, 5), 7), "attention_mask": torch.ones(1, 5, dtype=torch.long)}
    both = concat_inputs(a, b, ("input_ids", "attention_mask"))
    assert both["input_ids"].shape == (3, 5) and both["attention_mask"][:2, 3:].sum() == 0
    assert both["attention_mask"][2].sum() == 5


def test_strong_views_differ_from_weak_ones_and_stay_images():
    from ssl_pipeline.augment import StrongAugment

    torch.manual_seed(0)
    for channels in (1, 3):
        x = torch.rand(70, channels, 16, 16)  # more than one RandAugment chunk
        y = StrongAugment(16)(x)
        assert y.shape == x.shape and 0.0 <= float(y.min()) and float(y.max()) <= 1.0
        assert (y - x).abs().mean() > 0.05


def test_fixmatch_row_trains_on_the_train_pool_only(ssl_encoder, tmp_path, monkeypatch):
    from ssl_pipeline.finetune import fixmatch as FM

    out = tmp_path / "run"
    seen = []
    real_loss = FM.FixMatchTask.loss

    def spy_loss(self, model, batch, accelerator):
        seen.append((len(self.dataset), len(self.dataset.labeled), sorted(batch["unlabeled"])))
        return real_loss(self, model, batch, accelerator)

    scales = []
    real_train = FM.M.train

    def spy_train(task, plan, accelerator, seed, groups, **kwargs):
        scales.append({g["lr_scale"] for g in groups})
        return real_train(task, plan, accelerator, seed, groups=groups, **kwargs)

    monkeypatch.setattr(FM.FixMatchTask, "loss", spy_loss)
    monkeypatch.setattr(FM.M, "train", spy_train)
    finetune_main(BASE + FT + [f"output_dir={out}", f"finetune.encoder={ssl_encoder}", "finetune.encoder_lr_scale=0.1",
                               "finetune.fixmatch.encoder_lr_scale=0.5"])
    assert scales == [{1.0, 0.5}]  # head at the full lr, encoder at fixmatch's own scale (not the finetune row's)
    doc = json.loads((out / "label_efficiency.json").read_text())
    assert [r["method"] for r in doc["rows"]] == ["fixmatch"] and 0.0 <= doc["rows"][0]["accuracy"] <= 1.0
    assert doc["rows"][0]["settings"]["fixmatch"]["encoder_lr_scale"] == 0.5  # the row says how it was made
    pool, labeled, keys = seen[0]
    assert pool == doc["n_train"] != doc["n_test"] and labeled == doc["rows"][0]["n_labels"]
    assert keys == ["images"]  # no labels in the pool's batches
    # one epoch over the 1,437-image pool at 64 per step (the subset's caps do not apply)
    assert len(seen) == -(-1437 // 64)
    assert "fixmatch" in (out / "label_efficiency.md").read_text()


def test_image_views_made_a_batch_ahead_give_the_rows_made_inline(ssl_encoder, tmp_path, monkeypatch):
    """finetune / supervised / fixmatch make their image views one batch ahead in a background thread
    (pretrain.overlap_views, as pretraining does); each batch's views are seeded by its position, so the rows
    are the same to the last prediction as with the views made inline. Text keeps its masking inline."""
    from ssl_pipeline.finetune import methods as M
    from ssl_pipeline.finetune.labeled import TextLabeled

    overlaps, real_train = [], M.train

    def spy_train(task, plan, *args, **kwargs):
        overlaps.append((type(task).__name__, plan.overlap))
        return real_train(task, plan, *args, **kwargs)

    monkeypatch.setattr(M, "train", spy_train)
    rows = {}
    for ahead in (True, False):
        out = tmp_path / str(ahead)
        finetune_main(BASE + FT + [f"output_dir={out}", f"finetune.encoder={ssl_encoder}",
                                   "finetune.methods=[finetune,supervised,fixmatch]", f"pretrain.overlap_views={ahead}"])
        doc = json.loads((out / "label_efficiency.json").read_text())
        rows[ahead] = [{k: v for k, v in r.items() if k != "seconds"} for r in doc["rows"]]
    assert overlaps == [("ClassifierTask", True), ("ClassifierTask", True), ("FixMatchTask", True),
                        ("ClassifierTask", False), ("ClassifierTask", False), ("FixMatchTask", False)]
    assert rows[True] == rows[False] and len(rows[True]) == 3
    assert TextLabeled.views_ahead is False
    # a head on frozen features has no views: its batches skip prepare's per-batch RNG fork
    assert not M.ClassifierTask(None, None, None).prepares and M.ClassifierTask(None, None, lambda b: b).prepares


def test_fixmatch_two_processes_and_text(ssl_encoder, tmp_path):
    out = tmp_path / "run"
    proc = run_stage("finetune", BASE + FT + [f"output_dir={out}", f"finetune.encoder={ssl_encoder}",
                                              "finetune.fixmatch.ema_decay=0.9",
                                              "finetune.fixmatch.thresholds=flexmatch"], nproc=2)  # state gathered
    doc = json.loads((out / "label_efficiency.json").read_text())
    assert [r["method"] for r in doc["rows"]] == ["fixmatch"]
    assert doc["rows"][0]["settings"]["fixmatch"]["thresholds"] == "flexmatch"
    # a pass over the pool takes minutes on real data: it shows its own progress, loss and confident fraction
    assert "fixmatch: " in proc.stderr and "loss=" in proc.stderr
    shown = [float(x) for x in re.findall(r"confident=([0-9.e-]+)", proc.stderr)]
    assert shown and all(0.0 <= x <= 1.0 for x in shown)

    text = tmp_path / "text"
    cfg = ["--config", "configs/text/mlm_embedded.yaml", f"output_dir={text}", *SMALL_TEXT_MODEL]
    pretrain_main(cfg + ["pretrain.max_steps=3", "model.vocab_size=1000"])  # in-process: the CLI ran above
    finetune_main(cfg + FT + ["finetune.label_fractions=[0.2]"])
    doc = json.loads((text / "label_efficiency.json").read_text())
    assert [r["method"] for r in doc["rows"]] == ["fixmatch"] and doc["rows"][0]["accuracy"] > 0


def test_text_strong_view_masks_only_ordinary_tokens():
    from ssl_pipeline.finetune.labeled import TextLabeled
    from ssl_pipeline.masking import TokenMasker

    tok = SimpleNamespace(mask_token_id=4, unk_token_id=1, all_special_ids=[0, 1, 2, 3, 4])
    data = TextLabeled.__new__(TextLabeled)
    data.cfg = SimpleNamespace(finetune=SimpleNamespace(fixmatch=SimpleNamespace(text_mask_probability=0.5)))
    data.masker = TokenMasker(tok, 50, tok.mask_token_id)
    torch.manual_seed(0)
    ids = torch.cat([torch.full((64, 1), 2), torch.randint(5, 50, (64, 30)), torch.full((64, 1), 3)], 1)
    out = data.strong_transform({"input_ids": ids, "attention_mask": torch.ones_like(ids)})["input_ids"]
    changed = out != ids
    assert not changed[:, 0].any() and not changed[:, -1].any()  # [CLS] / [SEP] kept
    assert 0.3 < changed[:, 1:-1].float().mean() < 0.55 and (out == 4).float().mean() > 0.3


def test_fixmatch_settings_are_checked_and_stamped_on_its_rows(tmp_path):
    from ssl_pipeline.config import load_config
    from ssl_pipeline.errors import UserError
    from ssl_pipeline.finetune.runner import _fingerprint, _load_rows, row_settings

    with pytest.raises(UserError, match="finetune.fixmatch.threshold"):
        load_config("configs/vision/simclr_digits.yaml", ["finetune.fixmatch.threshold=1.5"])
    with pytest.raises(UserError, match="finetune.fixmatch.ema_decay"):
        load_config("configs/vision/simclr_digits.yaml", ["finetune.fixmatch.ema_decay=1"])
    with pytest.raises(UserError, match="unknown config key 'finetune.fixmatch.treshold'"):
        load_config("configs/vision/simclr_digits.yaml", ["finetune.fixmatch.treshold=0.9"])
    enc = tmp_path / "enc"
    enc.mkdir()
    (enc / "ssl_encoder.json").write_text("{}\n")
    default = load_config("configs/vision/simclr_digits.yaml", [])
    changed = load_config("configs/vision/simclr_digits.yaml", ["finetune.fixmatch.threshold=0.9"])
    explicit_default = load_config("configs/vision/simclr_digits.yaml", ["finetune.fixmatch.threshold=0.9",
                                                                         "finetune.fixmatch.ema_decay=0"])
    # fixmatch settings stay out of the fingerprint, so they never orphan the other rows; the value a report written
    # before finetune.fixmatch existed holds for this config and encoder (computed with that release) is its era's
    assert _fingerprint(default, enc) == _fingerprint(changed, enc) != "63c1b433eaf94b0a"
    assert _fingerprint(default, enc, "stamped") == _fingerprint(changed, enc, "stamped") == "63c1b433eaf94b0a"
    # before the rows carried their settings, keys off their defaults entered the fingerprint: still accepted
    legacy = _fingerprint(changed, enc, "sectioned")
    assert legacy == _fingerprint(explicit_default, enc, "sectioned") != _fingerprint(default, enc, "sectioned")

    path, header = tmp_path / "label_efficiency.json", {"fingerprint": _fingerprint(default, enc)}
    cell = {"label_fraction": 0.1, "n_labels": 10, "seed": 0, "accuracy": 0.5}
    stamped = [{"method": "finetune", **cell}, {"method": "fixmatch", **cell, "settings": row_settings(changed, "fixmatch")}]
    path.write_text(json.dumps({"fingerprint": header["fingerprint"], "rows": stamped}))
    assert len(_load_rows(path, header, changed, enc, ["finetune", "fixmatch"])) == 2
    # a report of the stamp era (no recipe; its fingerprint hashed the tracking keys too) resumes, off-default sections too
    path.write_text(json.dumps({"fingerprint": _fingerprint(changed, enc, "stamped"), "rows": stamped}))
    assert len(_load_rows(path, header, changed, enc, ["finetune", "fixmatch"])) == 2
    path.write_text(json.dumps({"fingerprint": header["fingerprint"], "rows": stamped}))
    with pytest.raises(UserError, match=r"fixmatch rows made with other settings: finetune.fixmatch.threshold "
                                        r"\(0.9 there, 0.95 now\)"):
        _load_rows(path, header, default, enc, ["finetune", "fixmatch"])
    # fixmatch not requested now: the other rows resume, the fixmatch rows keep their own stamp
    kept = _load_rows(path, header, default, enc, ["finetune"])
    assert [r["method"] for r in kept] == ["finetune", "fixmatch"] and kept[1]["settings"]["fixmatch"]["threshold"] == 0.9

    # a report written before the stamp: resumes under its settings, its rows stamped with them; not under others
    path.write_text(json.dumps({"fingerprint": legacy, "rows": [{"method": "fixmatch", **cell}]}))
    loaded = _load_rows(path, header, changed, enc, ["fixmatch"])
    assert loaded[0]["settings"] == row_settings(changed, "fixmatch")
    with pytest.raises(UserError, match="different encoder or fine-tune recipe"):
        _load_rows(path, header, default, enc, ["fixmatch"])
    # a key added after a row was written counts at its default (the behaviour before it existed)
    older = row_settings(default, "fixmatch")
    del older["fixmatch"]["ema_decay"]
    path.write_text(json.dumps({"fingerprint": header["fingerprint"], "rows": [{"method": "fixmatch", **cell,
                                                                                "settings": older}]}))
    assert len(_load_rows(path, header, default, enc, ["fixmatch"])) == 1
    with pytest.raises(UserError, match="finetune.fixmatch.ema_decay"):
        _load_rows(path, header, load_config("configs/vision/simclr_digits.yaml", ["finetune.fixmatch.ema_decay=0.9"]),
                   enc, ["fixmatch"])


def test_a_distilled_students_teacher_can_be_the_fixmatch_model_trained_once_for_both_rows(ssl_encoder, tmp_path,
                                                                                           monkeypatch):
    from ssl_pipeline.config import load_config
    from ssl_pipeline.finetune import fixmatch as FM
    from ssl_pipeline.finetune import runner as R

    out = tmp_path / "run"
    trained = []
    real_fixmatch = FM.fixmatch

    def spy_fixmatch(model, data, idx, ft, accelerator, seed, run_dir=None):
        trained.append((tuple(idx), seed))
        return real_fixmatch(model, data, idx, ft, accelerator, seed, run_dir)

    monkeypatch.setattr(FM, "fixmatch", spy_fixmatch)
    finetune_main(BASE + FT + [f"output_dir={out}", f"finetune.encoder={ssl_encoder}", "finetune.methods=[distill,fixmatch]",
                               "finetune.distill_epochs=1",
                               "finetune.distill_teacher=fixmatch"])
    doc = json.loads((out / "label_efficiency.json").read_text())
    rows = {r["method"]: r for r in doc["rows"]}
    assert len(trained) == 1  # one fixmatch training: the distill cell's teacher, then the fixmatch row's model
    assert rows["distill"]["teacher"] == "fixmatch" and doc["students"]["distill"]["teacher"] == "fixmatch"
    assert rows["distill"]["teacher_accuracy"] == rows["fixmatch"]["accuracy"]  # the very model of the fixmatch row
    # the student depends on fixmatch's settings too: its row records them, and resuming checks them
    assert rows["distill"]["settings"]["fixmatch"]["epochs"] == 1 == rows["fixmatch"]["settings"]["fixmatch"]["epochs"]
    assert "| distill | fixmatch |" in (out / "label_efficiency.md").read_text()
    # another teacher is another recipe; the default (finetune) keeps reports written before the key resumable
    enc = ssl_encoder
    default = load_config("configs/vision/simclr_digits.yaml", [])
    other = load_config("configs/vision/simclr_digits.yaml", ["finetune.distill_teacher=fixmatch"])
    assert R._fingerprint(default, enc) != R._fingerprint(other, enc)
    assert R.row_settings(default, "distill") == {} and set(R.row_settings(other, "distill_int8")) == {"fixmatch"}


def test_a_fixmatch_cell_killed_mid_pass_resumes_at_its_checkpoint_with_the_uninterrupted_result(ssl_encoder,
                                                                                                  tmp_path):
    """A pass over the pool takes minutes to hours: kill -9 inside it, rerun, and the cell continues from its last
    checkpoint (moving average, FlexMatch's memory and the labeled order included) to the uninterrupted row."""
    import signal
    import subprocess
    import time

    from conftest import ROOT, cli_env, launch_args

    ft = BASE + FT + [f"finetune.encoder={ssl_encoder}", "finetune.fixmatch.epochs=2", "threads=1",
                      "finetune.fixmatch.ema_decay=0.9", "finetune.fixmatch.thresholds=flexmatch",
                      "finetune.fixmatch.threshold=0.5", "finetune.checkpoint_every=5"]
    full, crashed = tmp_path / "full", tmp_path / "crashed"
    finetune_main(ft + [f"output_dir={full}"])  # the reference, in-process (1 thread, as the CLI runs)

    proc = subprocess.Popen(launch_args(1) + ["finetune"] + ft + [f"output_dir={crashed}"], cwd=ROOT, env=cli_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not list((crashed / "cells").glob("fixmatch_*/checkpoints/step_0000010/trainer_state.json")):
        assert proc.poll() is None, "the grid ended before the kill"
        assert time.time() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (crashed / "label_efficiency.json").exists()
    cell = next((crashed / "cells").glob("fixmatch_*labels_seed0"))
    state = torch.load(cell / "checkpoints" / "step_0000010" / "task_state.pt", weights_only=True)
    assert set(state) == {"ema", "held"} and (state["held"] >= 0).any()  # FlexMatch had started remembering

    rerun = run_stage("finetune", ft + [f"output_dir={crashed}"])
    assert "resumed from" in rerun.stdout and "(step 10 of 46)" in rerun.stdout
    a, b = (json.loads((d / "label_efficiency.json").read_text())["rows"] for d in (full, crashed))
    assert a[0]["correct"] == b[0]["correct"] and a[0]["accuracy"] == b[0]["accuracy"]
    # the pass's log reads like the uninterrupted one; its checkpoints went once the row was written
    steps = [[r["step"] for r in read_metrics(d / "cells" / cell.name)] for d in (full, crashed)]
    assert steps[0] == steps[1] and steps[0][-1] == 46  # 2 passes of 23 steps over the 1,437 images
    assert not (cell / "checkpoints").exists() and not (full / "cells" / cell.name / "checkpoints").exists()


def test_a_cell_checkpoint_made_for_other_settings_is_cleared_not_resumed(tmp_path):
    from types import SimpleNamespace

    from ssl_pipeline.finetune.cell_runs import CellRuns

    acc = SimpleNamespace(is_main_process=True, num_processes=1, wait_for_everyone=lambda: None)
    idx = np.arange(10)
    runs = CellRuns(tmp_path, "fp", acc, checkpoint_every=5)
    path = runs.directory("fixmatch", idx, 0, "enc", {"fixmatch": {"epochs": 8}})
    (path / "checkpoints" / "step_0000005").mkdir(parents=True)
    same = CellRuns(tmp_path, "fp", acc, 5).directory("fixmatch", idx, 0, "enc", {"fixmatch": {"epochs": 8}})
    assert same == path and (path / "checkpoints" / "step_0000005").is_dir()  # the same cell: resumed
    for fingerprint, subset, encoder, epochs in [("fp", idx, "enc", 16), ("other", idx, "enc", 8),
                                                 ("fp", idx[::-1].copy(), "enc", 8), ("fp", idx, "enc2", 8)]:
        other = CellRuns(tmp_path, fingerprint, acc, 5).directory("fixmatch", subset, 0, encoder,
                                                                  {"fixmatch": {"epochs": epochs}})
        assert other == path and not (path / "checkpoints").exists()  # other settings, recipe, subset, encoder
        (path / "checkpoints" / "step_0000005").mkdir(parents=True)
    runs.written()
    assert not (path / "checkpoints").exists() and (path / "cell.json").is_file()
    assert CellRuns(tmp_path, "fp", acc, checkpoint_every=0).directory("fixmatch", idx, 0, "enc", {}) is None


def test_fixmatch_task_state_round_trips_the_moving_average_flexmatch_memory_and_labeled_position():
    from ssl_pipeline.finetune.fixmatch import ClassThresholds, FixMatchTask, PoolWithLabeled

    def make():
        torch.manual_seed(0)
        net = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
        data = SimpleNamespace(train_transform=None, input_keys=("images",))
        pool = PoolWithLabeled(Items(range(30)), Items([3, 7, 11, 20, 21]), labeled_batch=2, seed=0)
        return FixMatchTask(net, pool, data, 1, 0.9, 1.0, ema_decay=0.5,
                            class_thresholds=ClassThresholds(30, 3, 0.9))

    trained = make()
    for step in range(3):  # three batches fetched and trained on
        trained.dataset.__getitems__([0, 1])
        with torch.no_grad():
            trained.model[1].weight.add_(1.0)
        trained.after_optimizer_step(trained.model, step + 1, 10)
    trained.class_thresholds.update(torch.tensor([4, 5]), torch.tensor([0.95, 0.5]), torch.tensor([2, 1]))
    state = trained.state_dict()

    resumed = make()
    resumed.load_state_dict(state, batches_done=3)
    assert torch.equal(resumed.class_thresholds.held, trained.class_thresholds.held)
    assert resumed.class_thresholds.held[4] == 2 and resumed.class_thresholds.held[5] == -1
    for a, b in zip(resumed.scored_model().state_dict().values(), trained.scored_model().state_dict().values()):
        assert torch.equal(a, b)
    assert not torch.equal(resumed.scored_model()[1].weight, make().model[1].weight)  # the average, not a fresh copy
    nxt = [ds.__getitems__([2, 3])["labeled"]["images"][:, 0, 0, 0].tolist() for ds in (resumed.dataset, trained.dataset)]
    assert nxt[0] == nxt[1]  # the 4th labeled batch, as the uninterrupted run would draw it
