"""Continued pretraining from checkpoints (model.init_from) and the base_* rows that score the checkpoint itself.
Tiny local checkpoints are built here: a timm file, an exported encoder, a BertForMaskedLM directory."""
import json

import pytest
import timm
import torch
from safetensors.torch import load_file, save_file

from conftest import one_line_error, read_metrics, run_stages
from ssl_pipeline.cli import finetune_main, pretrain_main
from ssl_pipeline.config import load_config
from ssl_pipeline.engine import make_accelerator
from ssl_pipeline.errors import UserError
from ssl_pipeline.tasks import build_task

DIGITS = ["--config", "configs/vision/simclr_digits.yaml", "pretrain.max_steps=2", "pretrain.batch_size=32",
          "model.projection_hidden_dim=32"]
FT = ["finetune.label_fractions=[0.1,1.0]", "finetune.seeds=[0]", "finetune.min_steps=2", "finetune.max_steps=2",
      "finetune.epochs=1"]
TEXT_YAML = """task: mlm
data: {source: embedded, max_length: 32}
pretrain: {batch_size: 8, max_steps: 2, optimizer: adamw, learning_rate: 0.001, lr_scaling: none, checkpoint_every: 2}
finetune: {label_fractions: [0.1, 1.0], seeds: [0], min_steps: 2, max_steps: 2, epochs: 1, batch_size: 16}
"""


def _task(config, overrides):
    cfg = load_config(config, overrides)
    return cfg, build_task(cfg, make_accelerator(cfg))


@pytest.fixture(scope="module")
def digits_encoder(tmp_path_factory):
    out = tmp_path_factory.mktemp("init") / "base"
    pretrain_main(DIGITS[:2] + [f"output_dir={out}"] + DIGITS[2:])
    return out / "encoder"


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    """A BertForMaskedLM directory with its own tokenizer, as `save_pretrained` writes it."""
    from transformers import BertConfig, BertForMaskedLM

    from ssl_pipeline.data.text import stdlib_docstrings, train_tokenizer

    path = tmp_path_factory.mktemp("bert") / "tiny-bert"
    tok = train_tokenizer(stdlib_docstrings()[0][:500], 400)
    torch.manual_seed(0)
    model = BertForMaskedLM(BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                       intermediate_size=64, max_position_embeddings=64))
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def test_vision_starts_from_an_exported_encoder(digits_encoder, tmp_path):
    cfg, task = _task("configs/vision/simclr_digits.yaml", [f"model.init_from={digits_encoder}",
                                                            f"output_dir={tmp_path / 'o'}"])
    saved = load_file(str(digits_encoder / "model.safetensors"))
    got = task.model.backbone.state_dict()
    assert saved.keys() == got.keys() and all(torch.equal(saved[k], got[k]) for k in saved)
    with pytest.raises(UserError) as err:
        _task("configs/vision/simclr_digits.yaml", [f"model.init_from={digits_encoder}", "model.backbone=resnet18"])
    assert "model.backbone='resnet18' contradicts model.init_from" in str(err.value)


def test_vision_starts_from_a_timm_checkpoint_file(tmp_path):
    torch.manual_seed(0)
    ref = timm.create_model("test_resnet", num_classes=7)  # a classifier the encoder must drop
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, str(tmp_path / "ckpt.safetensors"))
    base = ["data.channels=3", "model.backbone=test_resnet", f"model.init_from={tmp_path / 'ckpt.safetensors'}"]
    cfg, task = _task("configs/vision/simclr_digits.yaml", base)
    got = task.model.backbone.state_dict()
    assert "fc.weight" not in got and torch.equal(got["layer1.0.conv1.weight"], ref.state_dict()["layer1.0.conv1.weight"])
    assert task.cfg.model.backbone == "test_resnet"
    with pytest.raises(UserError) as err:  # the file does not fit another architecture
        _task("configs/vision/simclr_digits.yaml", base[:1] + ["model.backbone=ssl_cnn6"] + base[2:])
    assert "does not fit model.backbone='ssl_cnn6'" in str(err.value) and "the checkpoint's architecture" in str(err.value)
    with pytest.raises(UserError) as err:
        _task("configs/vision/simclr_digits.yaml", ["model.init_from=no_such_model_or_file"])
    assert "neither an existing file or directory nor a timm model name" in str(err.value)


def test_text_starts_from_a_bert_directory_with_its_tokenizer_and_head(tiny_bert, tmp_path):
    from transformers import BertForMaskedLM

    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text(TEXT_YAML)
    cfg, task = _task(cfg_file, [f"model.init_from={tiny_bert}", f"output_dir={tmp_path / 'o'}"])
    ref = BertForMaskedLM.from_pretrained(tiny_bert)
    assert task.model.mlm.config.hidden_size == 32 and len(task.tokenizer) == ref.config.vocab_size
    head = "cls.predictions.transform.dense.weight"
    assert torch.equal(task.model.mlm.state_dict()[head], ref.state_dict()[head])  # the MLM head is reused
    assert not list((tmp_path / "o" / "cache").glob("tokenizer-*"))  # no tokenizer was trained
    with pytest.raises(UserError) as err:
        _task(cfg_file, [f"model.init_from={tiny_bert}", "model.hidden_size=64"])
    assert "model.hidden_size=64 contradicts model.init_from" in str(err.value)


def test_text_continued_pretraining_two_processes_resumes_and_exports(tiny_bert, tmp_path):
    from transformers import AutoModel, AutoTokenizer

    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text(TEXT_YAML)
    out = tmp_path / "run"
    args = ["--config", str(cfg_file), f"model.init_from={tiny_bert}", f"output_dir={out}", "pretrain.mixed_precision=bf16"]
    # two runs in one launch: the second resumes from the first's step-2 checkpoint, with the same checkpoint start
    said = run_stages([["pretrain", *args], ["pretrain", *args, "pretrain.max_steps=4"]], tmp_path)
    assert "resumed from " in said[1] and "(step 2 of 4)" in said[1]
    assert [r["step"] for r in read_metrics(out) if "loss" in r][-1] == 4
    model = AutoModel.from_pretrained(out / "encoder")
    assert model.config.hidden_size == 32
    assert AutoTokenizer.from_pretrained(out / "encoder").get_vocab() == AutoTokenizer.from_pretrained(tiny_bert).get_vocab()
    spec = json.loads((out / "encoder" / "ssl_encoder.json").read_text())
    assert spec["init_from"] == str(tiny_bert)
    # fine-tuning in-process and in fp32: bf16 is what this test covers for continued pretraining, and a CPU without
    # bf16 instructions emulates it at ~10x fp32's time (the base rows embed every text)
    finetune_main(args + ["finetune.methods=[finetune,base_probe,base_finetune]", "pretrain.mixed_precision=no"])
    doc = json.loads((out / "label_efficiency.json").read_text())
    assert {r["method"] for r in doc["rows"]} >= {"base_probe", "base_finetune"}
    assert doc["base_encoder"] == str(tiny_bert) and (out / "base_encoder" / "ssl_encoder.json").is_file()


def test_finetune_reports_the_best_baseline_including_the_checkpoint(digits_encoder, tmp_path, capsys, monkeypatch):
    from ssl_pipeline.finetune import report, runner

    out = tmp_path / "cont"
    args = DIGITS + [f"output_dir={out}", f"model.init_from={digits_encoder}"]
    pretrain_main(args)
    plots, real_plot = [], report._plot
    monkeypatch.setattr(report, "_plot", lambda *a, **k: plots.append(1) or real_plot(*a, **k))
    monkeypatch.setattr(runner, "PLOT_EVERY_S", 1e9)
    writes, real_write = [], runner.write_report
    monkeypatch.setattr(runner, "write_report", lambda *a, **k: writes.append(1) or real_write(*a, **k))
    finetune_main(args + FT)
    assert len(plots) == 1  # 16 cells of seconds each: the tables after every cell, the plot once, at the end
    assert len(writes) == 16  # once per cell: the last cell's report is the final one, not written twice
    doc = json.loads((out / "label_efficiency.json").read_text())
    methods = {r["method"] for r in doc["rows"]}
    assert methods == {"linear_probe", "finetune", "knn", "supervised", "classic", "probe_classic", "base_probe",
                       "base_finetune"}
    by = {(s["method"], s["label_fraction"]): s["mean"] for s in doc["summary"]}
    for b in doc["best_baseline"]:
        contenders = [by[(m, b["label_fraction"])] for m in ("supervised", "classic", "base_probe", "base_finetune")]
        assert b["accuracy"] == max(contenders)
    assert len(doc["gain_over_best_baseline"]) == 2 and "label_multiplier_vs_best_baseline" in doc
    assert "×" in doc["label_multiplier_vs_best_baseline"]["text"]
    # the base rows score the starting checkpoint itself: its probe equals a probe run on that encoder directly
    capsys.readouterr()
    direct = tmp_path / "direct"
    finetune_main(DIGITS + FT + [f"output_dir={direct}", f"finetune.encoder={digits_encoder}",
                                 "finetune.methods=[linear_probe]"])
    d = json.loads((direct / "label_efficiency.json").read_text())
    base_rows = {(r["label_fraction"], r["seed"]): r["accuracy"] for r in doc["rows"] if r["method"] == "base_probe"}
    assert base_rows == {(r["label_fraction"], r["seed"]): r["accuracy"] for r in d["rows"]}
    md = (out / "label_efficiency.md").read_text()
    assert "best baseline" in md and "base_probe" in md


def test_the_checkpoint_is_scored_alone_before_pretraining_then_beside_the_ssl_rows(tmp_path, capsys):
    """What the user would otherwise get, measured before paying for pretraining: with no encoder yet and only
    baseline rows asked for, the grid scores the checkpoint alone, into OUTPUT_DIR/baselines/."""
    torch.manual_seed(0)
    ckpt = tmp_path / "ckpt.safetensors"
    save_file({k: v.contiguous() for k, v in timm.create_model("test_resnet").state_dict().items()}, str(ckpt))
    out = tmp_path / "run"
    args = DIGITS + [f"output_dir={out}", "model.backbone=test_resnet", f"model.init_from={ckpt}"] + FT
    one_line_error(finetune_main, args, capsys, 'score the starting checkpoint alone first: '
                                                '"finetune.methods=[base_finetune,base_probe,supervised]"')
    finetune_main(args + ["finetune.methods=[base_probe,base_finetune,supervised]"])
    said = capsys.readouterr().out
    assert f"no encoder pretrained here yet: scoring the starting checkpoint {ckpt}" in said
    assert "without pretraining, the best at 10 % labels (" in said  # the pilot's answer, where the user watched
    pilot = json.loads((out / "baselines" / "label_efficiency.json").read_text())
    assert pilot["baselines_only"] and pilot["encoder"] == str(out / "base_encoder")
    assert {r["method"] for r in pilot["rows"]} == {"base_probe", "base_finetune", "supervised"}
    assert "what it was pretrained on is not known here" in pilot["test_duplicates_in_pretraining"]["reason"]
    assert not (out / "encoder").exists() and not (out / "label_efficiency.json").exists()
    assert "No SSL encoder yet: the starting checkpoint" in (out / "baselines" / "label_efficiency.md").read_text()
    # then pretraining in the same output_dir, and the full report: the checkpoint's rows are the pilot's, to the digit
    pretrain_main(args)
    finetune_main(args + ["finetune.methods=[finetune,base_probe,supervised]"])
    full = json.loads((out / "label_efficiency.json").read_text())
    assert not full["baselines_only"] and {r["method"] for r in full["rows"]} == {"finetune", "base_probe", "supervised"}
    before = {(r["method"], r["label_fraction"], r["seed"]): r["accuracy"] for r in pilot["rows"]}
    for row in full["rows"]:
        if row["method"] in ("base_probe", "supervised"):  # supervised: the same architecture, subsets and seeds
            assert row["accuracy"] == before[(row["method"], row["label_fraction"], row["seed"])], row["method"]


def test_a_text_checkpoint_alone_reads_the_texts_through_its_own_tokenizer(tiny_bert, tmp_path):
    from transformers import AutoTokenizer

    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text(TEXT_YAML)
    out = tmp_path / "run"
    finetune_main(["--config", str(cfg_file), f"model.init_from={tiny_bert}", f"output_dir={out}",
                   "finetune.methods=[base_probe,supervised,classic]"])
    doc = json.loads((out / "baselines" / "label_efficiency.json").read_text())
    assert doc["baselines_only"] and {r["method"] for r in doc["rows"]} == {"base_probe", "supervised", "classic"}
    exported = AutoTokenizer.from_pretrained(out / "base_encoder")
    assert exported.get_vocab() == AutoTokenizer.from_pretrained(tiny_bert).get_vocab()
    assert not (out / "cache").exists() or not list((out / "cache").glob("tokenizer-*"))  # none trained


def test_base_rows_need_a_checkpoint():
    with pytest.raises(UserError) as err:
        load_config("configs/vision/simclr_digits.yaml", ["finetune.methods=[base_probe]"])
    assert "need a starting checkpoint" in str(err.value)
