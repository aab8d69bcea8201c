"""Image tar shards (webdataset): written from a folder with its splits and classes, streamed by pretraining with
each process on its own shards, read back for fine-tuning."""
import json
import tarfile

import numpy as np
import pytest
from PIL import Image

from conftest import run_stage
from ssl_pipeline.cli import finetune_main


def _folder(root, per_class=24, unlabeled=0):
    """ROOT/CLASS/*.png, or with unlabeled images ROOT/train/CLASS/*.png + ROOT/unlabeled/*.png."""
    rng = np.random.default_rng(0)
    labeled = root / "train" if unlabeled else root
    for c, value in (("dark", 40), ("light", 200)):
        (labeled / c).mkdir(parents=True)
        for i in range(per_class):
            arr = np.clip(rng.normal(value, 30, (12, 12)), 0, 255).astype(np.uint8)
            Image.fromarray(arr).save(labeled / c / f"{c}{i}.png")
    if unlabeled:
        (root / "unlabeled").mkdir()
        for i in range(unlabeled):
            Image.fromarray(rng.integers(0, 255, (12, 12), dtype=np.uint8)).save(root / "unlabeled" / f"u{i}.png")
    return root


def test_make_shards_keeps_splits_classes_and_bytes(tmp_path):
    from ssl_pipeline.data.shards import main

    src = _folder(tmp_path / "imgs")
    main([str(src), str(tmp_path / "shards"), "--shard-size", "10"])
    meta = json.loads((tmp_path / "shards" / "meta.json").read_text())
    assert meta["class_names"] == ["dark", "light"] and meta["splits"] == {"train": 38, "test": 10}
    trains = sorted((tmp_path / "shards").glob("train-*.tar"))
    assert len(trains) == 4 and len(list((tmp_path / "shards").glob("test-*.tar"))) == 1
    with tarfile.open(trains[0]) as tar:
        names = tar.getnames()
        first_png = tar.extractfile(next(n for n in names if n.endswith(".png"))).read()
    assert any(n.endswith(".cls") for n in names) and first_png.startswith(b"\x89PNG")


def test_pretrain_streams_shards_on_two_processes_and_finetune_reads_them(tmp_path):
    from ssl_pipeline.data.shards import make_shards

    src = _folder(tmp_path / "imgs", unlabeled=16)
    assert make_shards(str(src), str(tmp_path / "shards"), shard_size=6)["splits"] == {"train": 38, "test": 10,
                                                                                         "unlabeled": 16}
    out = tmp_path / "run"
    args = ["--config", "configs/vision/simclr_digits.yaml", "data.source=webdataset", f"data.root={tmp_path / 'shards'}",
            "data.image_size=12", f"output_dir={out}", "pretrain.max_steps=3", "pretrain.batch_size=8",
            "model.projection_hidden_dim=32", "data.shuffle_buffer=20", "pretrain.monitor_samples=16"]
    proc = run_stage("pretrain", args, nproc=2)
    assert "a stream of images" in proc.stdout and (out / "encoder" / "model.safetensors").is_file()
    finetune_main(args + ["finetune.methods=[knn]", "finetune.seeds=[0]", "finetune.label_fractions=[1.0]"])
    doc = json.loads((out / "label_efficiency.json").read_text())
    assert doc["n_train"] == 38 and doc["n_test"] == 10 and doc["class_names"] == ["dark", "light"]


def test_each_reader_needs_a_shard(tmp_path):
    from ssl_pipeline.config import DataConfig
    from ssl_pipeline.data.shards import StreamedImages
    from ssl_pipeline.errors import UserError

    with pytest.raises(UserError, match="every reader needs a shard"):
        StreamedImages(["a.tar"], DataConfig(source="webdataset", num_workers=2), 0, 2, 0)
