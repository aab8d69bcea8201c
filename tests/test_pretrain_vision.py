"""End to end: 2-process SimCLR on digits; loss goes down; the export loads with load_encoder and with timm; the
fine-tune grid and a time-budget run on 2 processes (one launch for the three)."""
import json

import pytest
import timm
import torch
from safetensors.torch import load_file

from conftest import read_metrics, run_stages
from test_finetune import FT_FAST, _check_outputs
from ssl_pipeline import load_encoder
from ssl_pipeline.cli import finetune_main, pretrain_main
from ssl_pipeline.data.images import load_images
from ssl_pipeline.config import DataConfig


DIGITS = ["--config", "configs/vision/simclr_digits.yaml"]
BUDGET = ["pretrain.max_minutes=0.2", "pretrain.batch_size=32", "pretrain.log_every=5", "pretrain.monitor_every=0"]


@pytest.fixture(scope="module")
def two_process_runs(tmp_path_factory):
    """The 2-process SimCLR runs, in one launch: 8 epochs, the fine-tune grid on them, and a time-budget run."""
    root = tmp_path_factory.mktemp("simclr")
    out, budget = root / "run", root / "budget"
    said = run_stages([
        ["pretrain", *DIGITS, f"output_dir={out}", "pretrain.epochs=8", "pretrain.batch_size=64", "pretrain.log_every=2",
         "pretrain.checkpoint_every=20", "model.projection_hidden_dim=128"],
        ["finetune", *DIGITS, f"output_dir={out}", *FT_FAST],
        ["pretrain", *DIGITS, *BUDGET, f"output_dir={budget}"],
    ], root)
    return out, budget, said


@pytest.fixture(scope="module")
def vision_run(two_process_runs):
    return two_process_runs[0]


def test_two_process_run_learns_and_logs(vision_run):
    rows = read_metrics(vision_run)
    for key in ("step", "epoch", "loss", "lr", "samples_per_sec"):
        assert key in rows[0]
    first, last = rows[0]["loss"], rows[-1]["loss"]
    assert last < first - 0.3, (first, last)
    # 1,437 train images, 2 processes x 64 -> 11 steps per epoch, 8 epochs
    assert rows[-1]["step"] == 8 * (1437 // 128)
    assert list((vision_run / "tensorboard").rglob("events.out.tfevents*"))
    assert (vision_run / "checkpoints").is_dir()
    # the leakage guard ran once (main process) and every process got its verdict: the run went on, and said it
    spec = json.loads((vision_run / "encoder" / "ssl_encoder.json").read_text())
    assert spec["leakage"]["checked"] is True and spec["leakage"]["test_examples_with_exact_duplicates"] == 0


def test_export_loads_with_load_encoder_and_timm(vision_run):
    enc = load_encoder(vision_run / "encoder")
    spec = json.loads((vision_run / "encoder" / "ssl_encoder.json").read_text())
    x = torch.rand(5, 1, 16, 16)
    with torch.no_grad():
        emb = enc(x)
    assert emb.shape == (5, spec["embedding_dim"])
    # round trip: a second load gives identical embeddings
    with torch.no_grad():
        assert torch.equal(load_encoder(vision_run / "encoder")(x), emb)
    # plain timm: same weights, same features (normalisation applied by hand)
    model = timm.create_model(spec["timm_name"], **spec["timm_kwargs"])
    model.load_state_dict(load_file(str(vision_run / "encoder" / "model.safetensors")))
    model.eval()
    with torch.no_grad():
        assert torch.allclose(model((x - 0.5) / 0.5), emb, atol=1e-6)


def test_vision_pretrain_then_finetune_two_processes(vision_run, capsys):
    doc = _check_outputs(vision_run, "simclr", 6)  # the 2-process grid of the fixture's launch
    # a re-run finds every cell done and trains nothing
    before = (vision_run / "label_efficiency.json").read_text()
    capsys.readouterr()
    finetune_main([*DIGITS, f"output_dir={vision_run}", *FT_FAST])  # in-process
    said = capsys.readouterr().out
    assert "(24 already done)" in said
    # the report's answer closes the run's output, without markdown
    summary = said.split("label-efficiency report: ")[1].splitlines()[1:]
    assert summary[0].startswith("  gain over supervised at 5 % labels: ") and " points" in summary[0]
    assert any(line.startswith("  label multiplier: supervised needs ") for line in summary)
    assert any(line.startswith("  added to classic at 5 % labels: probe_classic ") for line in summary)
    assert not any("**" in line or "`" in line for line in summary)
    assert json.loads((vision_run / "label_efficiency.json").read_text())["rows"] == json.loads(before)["rows"]
    assert doc["n_test"] == 360


def test_two_processes_agree_on_the_plan_and_the_record_keeps_the_budget(two_process_runs, capsys):
    """pretrain.max_minutes: each process measures its own steps; both must plan the same count, or DDP would hang
    at the last one."""
    _, out, said = two_process_runs
    said = said[2]
    assert said.count("pretrain.max_minutes=0.2: ") == 1  # said once, by the main process
    assert "time budget measured again at step " in said
    planned = int(said.split("trained ")[1].split(" steps in ")[0].replace(",", ""))
    rows = [r for r in read_metrics(out) if "loss" in r]
    assert rows[-1]["step"] == planned and rows[-1]["lr"] < 0.01 * max(r["lr"] for r in rows)
    done = json.loads((out / "pretrain_done.json").read_text())
    assert done["max_minutes"] == 0.2 and done["step"] == planned
    record = json.loads((out / "encoder" / "ssl_encoder.json").read_text())["pretraining"]
    assert record["max_minutes"] == 0.2 and record["steps"] == planned
    pretrain_main([*DIGITS, *BUDGET, f"output_dir={out}"])  # in-process, one process
    assert "already complete" in capsys.readouterr().out


def test_resnet_small_stem_export_round_trip(tmp_path):
    out = tmp_path / "r"
    pretrain_main(["--config", "configs/vision/simclr_digits.yaml", f"output_dir={out}", "model.backbone=resnet18",
                   "model.small_stem=true", "data.channels=3", "pretrain.max_steps=2", "pretrain.batch_size=16",
                   "model.projection_hidden_dim=64"])  # in-process: the CLI's own runs are the fixture's
    enc = load_encoder(out / "encoder")
    assert enc.backbone.conv1.kernel_size == (3, 3) and isinstance(enc.backbone.maxpool, torch.nn.Identity)
    with torch.no_grad():
        assert enc(torch.rand(2, 3, 16, 16)).shape == (2, 512)


def test_embedded_split_is_disjoint_and_stratified():
    cfg = DataConfig(source="embedded", image_size=8, channels=1)
    train, test = load_images(cfg, "pretrain"), load_images(cfg, "test")
    assert len(train) + len(test) == 1797
    tr = {tuple(x.flatten().tolist()) for x in train.dataset.images}
    te = [tuple(x.flatten().tolist()) for x in test.dataset.images]
    assert sum(t in tr for t in te) < 5  # digits holds a handful of exact duplicates across the split
    counts = torch.bincount(test.labels, minlength=10)
    assert counts.min() >= 30
