"""Image tar shards (webdataset): written from a folder with its splits and classes, streamed by pretraining with
each process on its own shards, read back for fine-tuning."""
import json
import tarfile

import numpy as np
import torch
import pytest
from PIL import Image

from conftest import run_stage
from ssl_pipeline.cli import finetune_main, pretrain_main


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


def _parquet_images(path, n=24, shards=4):
    """`n` labeled PNGs as an image dataset in `shards` parquet files (what a hub image dataset is made of)."""
    import datasets

    rng = np.random.default_rng(1)
    files = []
    for s in range(shards):
        rows = {"image": [], "label": []}
        for i in range(s, n, shards):
            light = (i // shards) % 2  # alternating within each file
            rows["image"].append(Image.fromarray(np.clip(rng.normal(200 if light else 40, 30, (12, 12)), 0, 255)
                                                 .astype(np.uint8)))
            rows["label"].append(["dark", "light"][light])
        ds = datasets.Dataset.from_dict(rows).cast_column("image", datasets.Image())
        files.append(path / f"train-{s}.parquet")
        ds.to_parquet(str(files[-1]))
    return files


def test_streamed_hub_images_split_between_processes_and_pretrain(tmp_path):
    """data.source=hf data.streaming=true: each process reads its own shards (together: every image once per
    pass), images decode to the configured size, and pretraining runs from the stream."""
    from ssl_pipeline.config import DataConfig
    from ssl_pipeline.data.hub_images import StreamedHubImages, first_images

    files = _parquet_images(tmp_path)
    cfg = DataConfig(source="hf", files=[str(f) for f in files], streaming=True, image_size=8, channels=1,
                     shuffle_buffer=4)
    seen = []
    for rank in (0, 1):
        it = iter(StreamedHubImages(cfg, rank, 2, seed=0))
        part = [next(it)["images"] for _ in range(12)]  # one pass over this process's half
        assert all(x.shape == (1, 8, 8) and x.dtype == torch.uint8 for x in part)
        seen.append({tuple(x.flatten().tolist()) for x in part})
    assert len(seen[0]) == len(seen[1]) == 12 and not seen[0] & seen[1]  # disjoint halves of 24 distinct images
    images, labels = first_images(cfg, 6)
    assert images["images"].shape == (6, 1, 8, 8) and labels.tolist() == [0, 1, 0, 1, 0, 1]
    out = tmp_path / "run"
    args = ["--config", "configs/vision/simclr_digits.yaml", "data.source=hf", f"data.files=[{','.join(map(str, files))}]",
            "data.streaming=true", "data.image_size=12", f"output_dir={out}", "pretrain.max_steps=3",
            "pretrain.batch_size=8", "model.projection_hidden_dim=32", "data.shuffle_buffer=8",
            "pretrain.monitor_samples=16", "data.num_workers=2"]
    pretrain_main(args)  # in-process (with its decoding workers)
    assert (out / "encoder" / "model.safetensors").is_file()
    health = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if "knn_accuracy" in line]
    assert health and health[-1]["step"] == 3  # the monitor's labeled set came from the stream


def test_streaming_without_max_steps_is_refused(tmp_path, capsys):
    files = _parquet_images(tmp_path, n=8, shards=1)
    with pytest.raises(SystemExit):
        pretrain_main(["--config", "configs/vision/simclr_digits.yaml", "data.source=hf", f"data.files=[{files[0]}]",
                       "data.streaming=true", f"output_dir={tmp_path / 'run'}", "data.image_size=12"])
    assert "data.streaming=true needs pretrain.max_steps or pretrain.max_minutes" in capsys.readouterr().err


def test_the_documented_command_writes_shards_of_phone_photos(tmp_path):
    """README's `python -m ssl_pipeline.data.make_shards FOLDER OUT` named a module that did not exist ('No module
    named ssl_pipeline.data.make_shards'); run as a user would, on HEIC photos, whose bytes the shards keep."""
    import subprocess
    import sys

    from conftest import ROOT, cli_env
    from ssl_pipeline.config import DataConfig
    from ssl_pipeline.data.image_formats import register_decoders
    from ssl_pipeline.data.images import load_images

    register_decoders()  # to write the HEIC files here (the library registers it where it reads them)
    colours = {"beach": (230, 200, 120), "forest": (20, 120, 40)}
    for name, rgb in colours.items():
        (tmp_path / "photos" / name).mkdir(parents=True)
        for i in range(5):  # distinct files (byte-identical copies are held out only together)
            Image.new("RGB", (40 + i, 30), rgb).save(tmp_path / "photos" / name / f"IMG_{i}.HEIC", format="HEIF")
    done = subprocess.run([sys.executable, "-m", "ssl_pipeline.data.make_shards", str(tmp_path / "photos"),
                           str(tmp_path / "shards")], cwd=ROOT, env=cli_env(), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "wrote 8 train, 2 test images as shards" in done.stdout
    train = load_images(DataConfig(source="webdataset", root=str(tmp_path / "shards"), image_size=8), "train")
    assert train.class_names == ["beach", "forest"] and len(train) == 8
    for i in range(len(train)):
        pixels = train.dataset[i]["images"][0].float().mean(dim=(1, 2))  # in memory: a batch of one
        want = torch.tensor(colours[train.class_names[int(train.labels[i])]], dtype=torch.float)
        assert (pixels - want).abs().max() < 6
