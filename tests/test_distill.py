"""distill / distill_small / int8 (SimCLRv2's third step): the teacher of each subset and seed labels only the
train pool, students never see the test split, int8 agrees with float, rows and deployment fields are reported."""
import hashlib
import json

import numpy as np
import pytest
import torch
from torch import nn

from conftest import run_stage
from ssl_pipeline.cli import finetune_main, pretrain_main

BASE = ["--config", "configs/vision/simclr_digits.yaml", "pretrain.max_steps=4", "pretrain.batch_size=32",
        "model.projection_hidden_dim=32"]
FT = ["finetune.seeds=[0,1]", "finetune.label_fractions=[0.1]", "finetune.min_steps=4", "finetune.max_steps=4",
      "finetune.distill_epochs=1",
      "finetune.student=test_resnet", "finetune.quantize=int8"]
SMALL = ["data.image_size=8"]  # the digits' own size: a quarter of 16 px's work (emulated bf16 costs ~10x fp32)


def test_distill_rows_teachers_and_test_isolation(tmp_path, monkeypatch):
    from ssl_pipeline.finetune import distill as D
    from ssl_pipeline.finetune import runner as R

    out = tmp_path / "run"
    pretrain_main(BASE + SMALL + [f"output_dir={out}"])
    teachers, distilled, trained_sets = {}, [], []
    real_trained, real_distill, real_train = R.trained_classifier, D.distill, D.M.train

    def spy_trained(pretrained, idx, data, cfg, accelerator, encoder_path, seed, *rest):
        model = real_trained(pretrained, idx, data, cfg, accelerator, encoder_path, seed, *rest)
        teachers[id(model)] = (hashlib.sha1(np.ascontiguousarray(idx)).hexdigest(), seed)
        return model

    def spy_distill(teacher, student, data, idx, ft, accelerator, seed, *rest):
        distilled.append((teachers[id(teacher)], (hashlib.sha1(np.ascontiguousarray(idx)).hexdigest(), seed),
                          len(data.train_labels), len(data.test_labels)))
        return real_distill(teacher, student, data, idx, ft, accelerator, seed, *rest)

    def spy_train(task, plan, *args, **kwargs):
        trained_sets.append((task.dataset, getattr(task, "teacher", None)))
        return real_train(task, plan, *args, **kwargs)

    monkeypatch.setattr(R, "trained_classifier", spy_trained)
    monkeypatch.setattr(D, "distill", spy_distill)
    monkeypatch.setattr(D.M, "train", spy_train)
    finetune_main(BASE + SMALL + FT + [f"output_dir={out}", "finetune.methods=[distill,distill_small]"])
    # each student learned from the teacher trained on its own subset and seed; 2 seeds x 2 students
    assert len(distilled) == 4 and all(teacher == own for teacher, own, _, _ in distilled)
    assert len({own for _, own, _, _ in distilled}) == 2
    n_train, n_test = distilled[0][2], distilled[0][3]
    # students train on the train pool (soft labels), never on anything the size of the test split
    pools = [(d, t) for d, t in trained_sets if isinstance(d, D.SoftLabeled)]
    assert len(pools) == 4 and all(len(d) == n_train for d, _ in pools) and n_train != n_test
    assert all(abs(int(d.labeled.sum()) - 0.1 * n_train) < 10 for d, _ in pools)  # the labeled subset, class-balanced
    # digits train with augmentation: the subset's own teacher labels every augmented batch (nothing precomputed)
    assert all(d.logits is None and teachers[id(t)] == own for (d, t), (_, own, _, _) in zip(pools, distilled))
    doc = json.loads((out / "label_efficiency.json").read_text())
    methods = {r["method"] for r in doc["rows"]}
    assert methods == {"distill", "distill_int8", "distill_small", "distill_small_int8"}
    st = doc["students"]
    assert st["distill"]["params"] == st["distill"]["teacher_params"]
    assert st["distill_small"]["params"] < st["distill"]["params"]  # test_resnet: 0.37 M vs ssl_cnn6's 0.58 M
    assert all(v["examples_per_sec"] > 0 and v["size_bytes"] > 0 for v in st.values())
    md = (out / "label_efficiency.md").read_text()
    assert "Distilled students" in md and "| distill_small_int8 |" in md
    # (int8 vs float agreement is tested on a model whose float predictions are not degenerate, below)


def test_int8_agrees_with_float_on_most_inputs():
    from ssl_pipeline.finetune.distill import quantized_int8
    from ssl_pipeline.finetune.methods import Classifier

    class Encoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(nn.Linear(32, 128), nn.ReLU(), nn.Linear(128, 64))

        def forward(self, x):
            return self.net(x)

    torch.manual_seed(0)
    model = Classifier(Encoder(), nn.Linear(64, 10), ("x",)).eval()
    batch = {"x": torch.randn(2000, 32)}
    q = quantized_int8(model)
    with torch.no_grad():
        agree = (q(batch).argmax(-1) == model(batch).argmax(-1)).float().mean()
    assert agree > 0.95
    assert any("quantized" in type(m).__module__ for m in q.modules())
    # the int8 copy has as many weights as the float model (packed, not nn.Parameters), in fewer bytes
    from ssl_pipeline.finetune.distill import bytes_of, weight_count

    assert weight_count(q) == weight_count(model) == sum(p.numel() for p in model.parameters())
    assert bytes_of(q) < 0.5 * bytes_of(model)


def test_int8_rows_are_not_requested_directly_and_small_needs_a_student():
    from ssl_pipeline.config import load_config
    from ssl_pipeline.errors import UserError

    with pytest.raises(UserError, match="request 'distill' with finetune.quantize=int8"):
        load_config("configs/vision/simclr_digits.yaml", ["finetune.methods=[distill_int8]"])
    with pytest.raises(UserError, match="needs finetune.student"):
        load_config("configs/vision/simclr_digits.yaml", ["finetune.methods=[distill_small]"])


def test_teacher_soft_labels_gathered_over_two_processes_keep_pool_order(tmp_path):
    import subprocess

    from conftest import ROOT, cli_env, launch_args

    out = tmp_path / "logits.pt"
    cmd = launch_args(2)[:-1] + [str(ROOT / "tests/scripts/distill_logits_dist.py"), str(out)]
    proc = subprocess.run(cmd, env=cli_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = torch.load(out)
    assert got["logits"].shape == (37, 3)  # the padding that evens out the last batch is dropped
    assert torch.allclose(got["logits"], got["expected"], atol=1e-6)


def test_int8_student_of_a_bf16_run(tmp_path):
    """Under bf16 the students train with autocast in their forward; the trained model handed back must be a plain
    module again, or its int8 copy meets bf16 activations (seen on Fashion-MNIST: 'expected Float but found BFloat16')."""
    out = tmp_path / "run"
    pretrain_main(BASE + SMALL + [f"output_dir={out}"])
    run_stage("finetune", BASE + SMALL + FT + [f"output_dir={out}", "finetune.methods=[distill]", "finetune.seeds=[0]",
                                               "pretrain.mixed_precision=bf16"])
    doc = json.loads((out / "label_efficiency.json").read_text())
    assert {r["method"] for r in doc["rows"]} == {"distill", "distill_int8"}


def test_the_students_budget_is_distill_epochs_not_the_subset_cap():
    from types import SimpleNamespace

    from ssl_pipeline.config import FinetuneConfig
    from ssl_pipeline.finetune.methods import plan_for

    ft = FinetuneConfig(batch_size=256, min_steps=150, max_steps=500, epochs=30)
    one = SimpleNamespace(num_processes=1)
    assert plan_for(600, ft, one, "cell").max_steps == 150  # a 1 % subset: min_steps
    assert plan_for(60000, ft, one, "cell").max_steps == 500  # the labeled pool: capped
    assert plan_for(60000, ft, one, "distill", epochs=10, capped=False).max_steps == 10 * 235


def test_students_on_the_validation_carve(tmp_path):
    """evaluate_on=validation scores every row on a carve of train, the students included."""
    out = tmp_path / "run"
    pretrain_main(BASE + [f"output_dir={out}"])
    finetune_main(BASE + FT + [f"output_dir={out}", "finetune.methods=[distill_small]", "finetune.seeds=[0]",
                               "finetune.evaluate_on=validation", "finetune.quantize=none"])
    doc = json.loads((out / "validation" / "label_efficiency.json").read_text())
    assert {r["method"] for r in doc["rows"]} == {"distill_small"} and doc["evaluated_on"] == "validation"
    assert not (out / "label_efficiency.json").exists()  # the test split's report is not written


def test_consistent_teaching_labels_the_students_own_view():
    """A student identical to its teacher has no soft loss when the teacher labels the student's augmented view
    (online), and a positive one when the soft labels were computed on the unaugmented images (fixed)."""
    from contextlib import nullcontext
    from types import SimpleNamespace

    from ssl_pipeline.finetune.distill import DistillTask

    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))

    def model(batch):
        return net(batch["images"])

    def flip(batch):
        return {**batch, "images": batch["images"].flip(-1)}

    x = torch.randn(8, 1, 4, 4)
    batch = {"images": x, "labels": torch.zeros(8, dtype=torch.long), "labeled": torch.zeros(8)}
    accelerator = SimpleNamespace(autocast=nullcontext)
    online_task = DistillTask(None, None, flip, 1, 2.0, 1.0, teacher=model)
    _, online = online_task.loss(model, online_task.prepare(dict(batch)), accelerator)
    with torch.no_grad():
        fixed_logits = net(x)
    fixed_task = DistillTask(None, None, flip, 1, 2.0, 1.0)
    _, fixed = fixed_task.loss(model, fixed_task.prepare({**batch, "teacher": fixed_logits}), accelerator)
    assert float(online["soft_loss"]) < 1e-6 < 1e-3 < float(fixed["soft_loss"])
    assert float(online["label_loss"]) == 0.0  # no labeled example in this batch


def test_compact_students_are_the_advertised_fraction_of_ssl_cnn6():
    import timm

    import ssl_pipeline.models.small_cnn  # noqa: F401  (registers the small CNNs with timm)

    def weights(name):
        return sum(p.numel() for p in timm.create_model(name, in_chans=1).parameters())

    full = weights("ssl_cnn6")
    assert 0.4 < weights("ssl_cnn6_half") / full < 0.5 and 0.2 < weights("ssl_cnn6_narrow") / full < 0.3


def test_a_pretrained_student_starts_from_its_export_and_a_mismatched_one_fails_before_training(tmp_path, monkeypatch,
                                                                                                   capsys):
    """finetune.student may name an exported encoder (a smaller one pretrained on the same data): the student starts
    from exactly those weights; one made for other inputs is refused, naming the field, before any teacher trains."""
    import shutil

    from ssl_pipeline.export import load_encoder
    from ssl_pipeline.finetune import distill as D

    out, small = tmp_path / "run", tmp_path / "small"
    pretrain_main(BASE + [f"output_dir={out}"])
    pretrain_main(BASE + [f"output_dir={small}", "model.backbone=test_resnet"])
    exported = load_encoder(small / "encoder").state_dict()
    started, real = [], D.distill

    def spy(teacher, student, *rest):
        started.append({k: v.clone() for k, v in student.encoder.state_dict().items()})
        return real(teacher, student, *rest)

    monkeypatch.setattr(D, "distill", spy)
    run = BASE + FT + [f"output_dir={out}", "finetune.methods=[distill_small]", "finetune.seeds=[0]",
                       "finetune.quantize=none"]
    finetune_main(run + [f"finetune.student={small / 'encoder'}"])
    assert len(started) == 1 and started[0].keys() == exported.keys()
    assert all(torch.equal(started[0][k], v) for k, v in exported.items())
    doc = json.loads((out / "label_efficiency.json").read_text())
    student = load_encoder(small / "encoder")
    head_params = 10 * (student.embedding_dim + 1)  # linear head, digits' 10 classes
    assert doc["students"]["distill_small"]["params"] == sum(p.numel() for p in student.parameters()) + head_params

    wrong = tmp_path / "wrong"
    shutil.copytree(small / "encoder", wrong)
    spec = json.loads((wrong / "ssl_encoder.json").read_text())
    (wrong / "ssl_encoder.json").write_text(json.dumps({**spec, "image_size": spec["image_size"] * 2}))
    started.clear()
    with pytest.raises(SystemExit):
        finetune_main(run + [f"output_dir={tmp_path / 'run2'}", f"finetune.encoder={out / 'encoder'}",
                             f"finetune.student={wrong}"])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "finetune.student" in err and "image_size" in err and not started
    with pytest.raises(SystemExit):
        finetune_main(run + [f"output_dir={tmp_path / 'run3'}", f"finetune.encoder={out / 'encoder'}",
                             f"finetune.student={tmp_path}"])
    assert "not an exported encoder" in capsys.readouterr().err


def test_a_text_student_must_read_the_teachers_tokens(tmp_path):
    """Texts are tokenized once, with the teacher's tokenizer: an exported text student with another vocabulary,
    or fewer positions than the texts' length, is refused by name; one with the same tokenizer loads."""
    from transformers import BertConfig, BertForMaskedLM

    from ssl_pipeline.config import Config
    from ssl_pipeline.data.text import stdlib_docstrings, train_tokenizer
    from ssl_pipeline.errors import UserError
    from ssl_pipeline.export import save_text_encoder
    from ssl_pipeline.finetune.labeled import TextLabeled

    texts = stdlib_docstrings()[0][:300]
    teacher_tok, other_tok = train_tokenizer(texts, 300), train_tokenizer(texts, 200)

    def export(tokenizer, name, positions=64):
        model = BertForMaskedLM(BertConfig(vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=1,
                                           num_attention_heads=2, intermediate_size=32,
                                           max_position_embeddings=positions))
        save_text_encoder(model, tokenizer, tmp_path / name, Config())
        return str(tmp_path / name)

    data = object.__new__(TextLabeled)  # only the tokenizer and the texts' length matter here
    data.tokenizer, data.max_length = teacher_tok, 64
    student, pretrained = data.student_encoder(export(teacher_tok, "same"), tmp_path)
    assert student.embedding_dim == 16 and pretrained
    with pytest.raises(UserError, match="another tokenizer than the teacher's"):
        data.student_encoder(export(other_tok, "other"), tmp_path)
    with pytest.raises(UserError, match="reads at most 32 tokens"):
        data.student_encoder(export(teacher_tok, "short", positions=32), tmp_path)
    with pytest.raises(UserError, match="neither an exported encoder directory nor a text size preset"):
        data.student_encoder("huge", tmp_path)
    from ssl_pipeline.finetune.labeled import pretrained_student

    with pytest.raises(UserError, match="finetune.student .* is a text encoder, but this config needs a vision"):
        pretrained_student(export(teacher_tok, "text_for_vision"), "vision", {})
