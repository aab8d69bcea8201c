"""End to end: 2-process SimCLR on digits; loss goes down; the export loads with load_encoder and with timm."""
import json

import pytest
import timm
import torch
from safetensors.torch import load_file

from conftest import read_metrics, run_stage
from ssl_pipeline import load_encoder
from ssl_pipeline.cli import pretrain_main
from ssl_pipeline.data.images import load_images
from ssl_pipeline.config import DataConfig


@pytest.fixture(scope="module")
def vision_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("simclr") / "run"
    run_stage("pretrain", ["--config", "configs/vision/simclr_digits.yaml", f"output_dir={out}",
                           "pretrain.epochs=8", "pretrain.batch_size=64", "pretrain.log_every=2",
                           "pretrain.checkpoint_every=20", "model.projection_hidden_dim=128"], nproc=2)
    return out


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
