"""Image folders are decoded once (in threads) and kept in memory, within data.in_memory_gb; JPEGs are decoded at a
reduced scale when the target size allows it."""
from collections import Counter

import numpy as np
import pytest
import torch
from PIL import Image

from ssl_pipeline.cli import finetune_main, pretrain_main
from ssl_pipeline.config import DataConfig
from ssl_pipeline.data import images
from ssl_pipeline.data.decode import decoded_once
from ssl_pipeline.data.images import DecodedImages, TensorImages, load_images, pil_to_tensor, to_8bit
from ssl_pipeline.errors import UserError

SMALL = ["pretrain.batch_size=4", "model.projection_hidden_dim=32", "data.image_size=16", "model.backbone=ssl_cnn6",
         "pretrain.min_steps=0", "pretrain.mixed_precision=no", "pretrain.monitor_samples=8"]


def _folder(root, n=6):
    rng = np.random.default_rng(0)
    for c in ("cat", "dog"):
        (root / c).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)).save(root / c / f"{i}.png")


def _counting(monkeypatch) -> Counter:
    decoded = Counter()
    real = images.pil_to_tensor

    def counted(img, size, channels):
        decoded[img] += 1
        return real(img, size, channels)

    monkeypatch.setattr(images, "pil_to_tensor", counted)
    return decoded


def test_a_folder_is_decoded_once_for_every_epoch_of_pretraining_and_for_fine_tuning(tmp_path, monkeypatch, capsys):
    root, out = tmp_path / "pets", tmp_path / "run"
    _folder(root)
    decoded = _counting(monkeypatch)
    args = ["--config", "configs/vision/simclr_folder.yaml", f"data.root={root}", f"output_dir={out}", *SMALL,
            "pretrain.max_steps=8", "pretrain.monitor_every=4", "data.num_workers=0"]  # 10 pool images: 4 epochs
    pretrain_main(args)
    assert len(decoded) == 12 and max(decoded.values()) == 1, decoded  # pool, test split (leakage guard), monitor
    decoded.clear()
    finetune_main(args + ["finetune.label_fractions=[1.0]", "finetune.seeds=[0,1]", "finetune.max_steps=2",
                          "finetune.min_steps=2", "finetune.methods=[finetune,knn]"])
    assert len(decoded) == 12 and max(decoded.values()) == 1, decoded  # once for the whole grid


def test_over_the_memory_limit_images_are_decoded_every_epoch_and_the_run_says_so(tmp_path, monkeypatch, capsys):
    root, out = tmp_path / "pets", tmp_path / "run"
    _folder(root)
    decoded = _counting(monkeypatch)
    pretrain_main(["--config", "configs/vision/simclr_folder.yaml", f"data.root={root}", f"output_dir={out}", *SMALL,
                   "pretrain.max_steps=6", "pretrain.monitor_every=0", "data.num_workers=0", "data.in_memory_gb=1e-6"])
    said = capsys.readouterr().out
    assert "more than data.in_memory_gb=1e-06: they are decoded again every epoch" in said
    pool = [f for f in decoded if "/cat/" in f or "/dog/" in f]
    assert max(decoded[f] for f in pool) >= 3  # 3 epochs, plus the leakage guard's pass


def test_decoded_once_keeps_pixels_labels_and_ids(tmp_path):
    _folder(tmp_path / "pets", n=3)
    cfg = DataConfig(source="folder", root=str(tmp_path / "pets"), image_size=8, channels=3, test_fraction=0.34)
    split = load_images(cfg, "train")
    assert isinstance(split.dataset, DecodedImages)
    held = decoded_once(split, cfg, "train images")
    assert isinstance(held.dataset, TensorImages) and held.ids == split.ids
    assert torch.equal(held.dataset.labels, split.labels)
    for i in range(len(split)):
        assert torch.equal(held.dataset.images[i], split.dataset[i]["images"])


def test_decoding_shows_progress_only_when_it_takes_long(tmp_path, monkeypatch, capsys):
    """Thousands of small images decode in a second: no bar (an emoji folder printed 12 lines for 1 s of work);
    camera photos take tens of seconds: a bar."""
    from ssl_pipeline.data import decode

    _folder(tmp_path / "pets", n=3)
    cfg = DataConfig(source="folder", root=str(tmp_path / "pets"), image_size=8, channels=3, test_fraction=0.34)
    split = load_images(cfg, "train")
    decode.decode_all(split.dataset, "train images")
    assert "decoding train images" not in capsys.readouterr().err
    monkeypatch.setattr(decode, "DECODE_PROGRESS_AFTER", 0.0)  # as if the decode had lasted past the delay
    decode.decode_all(split.dataset, "train images")
    assert f"decoding train images: {len(split)}/{len(split)} (100 %)" in capsys.readouterr().err


def test_an_image_that_fails_to_decode_is_named(tmp_path):
    _folder(tmp_path / "pets", n=3)
    bad = tmp_path / "pets" / "dog" / "1.png"
    bad.write_bytes(bad.read_bytes()[:60])  # the header reads, the pixels do not
    cfg = DataConfig(source="folder", root=str(tmp_path / "pets"), image_size=8, channels=3)
    split = images.ImageSplit(DecodedImages([str(p) for p in sorted((tmp_path / "pets").rglob("*.png"))], None, 8, 3),
                              None, 0, 8, 3)
    with pytest.raises(UserError, match=r"cannot decode image .*dog/1\.png"):
        decoded_once(split, cfg, "pretraining images")


def test_a_large_jpeg_is_decoded_at_a_reduced_scale_to_the_same_small_image(tmp_path, monkeypatch):
    from PIL import JpegImagePlugin

    y, x = np.mgrid[0:1200, 0:1600]
    rng = np.random.default_rng(0)
    photo = np.stack([x / 1600 * 255, y / 1200 * 255, (x + y) % 256], -1) + rng.normal(0, 10, (1200, 1600, 3))
    path = tmp_path / "photo.jpg"
    Image.fromarray(np.clip(photo, 0, 255).astype(np.uint8)).save(path, quality=90)
    scales = []
    real = JpegImagePlugin.JpegImageFile.draft

    def draft(self, mode, size):
        got = real(self, mode, size)
        scales.append(self.size)
        return got

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", draft)
    small = pil_to_tensor(str(path), 32, 3)
    assert scales == [(200, 150)]  # 1/8 of each side, still above 32 x 32
    with Image.open(path) as full:
        reference = np.asarray(to_8bit(full, 3).resize((32, 32), Image.BILINEAR)).transpose(2, 0, 1)
    assert np.abs(small.numpy().astype(float) - reference).mean() < 1.5


def test_an_iphone_photo_is_decoded_from_its_embedded_thumbnail_when_that_is_large_enough(tmp_path, monkeypatch):
    """HEIC photos (pillow-heif) carry a small preview; decoding it instead of the full image is ~25x faster at
    12 MP. Too small a preview for the target size is not used."""
    from pillow_heif.as_plugin import HeifImageFile

    from ssl_pipeline.data.image_formats import register_decoders

    register_decoders()  # to write the HEIC file here (the library registers it where it reads them)
    y, x = np.mgrid[0:600, 0:800]
    photo = np.stack([x / 800 * 255, y / 600 * 255, (x + y) % 256], -1).astype(np.uint8)
    path = tmp_path / "IMG_0001.HEIC"
    Image.fromarray(photo).save(path, format="HEIF", quality=90, thumbnails=[160])
    loaded = []
    real = HeifImageFile.load

    def load(self):
        loaded.append(self.size)
        return real(self)

    monkeypatch.setattr(HeifImageFile, "load", load)
    small = pil_to_tensor(str(path), 32, 3)
    assert loaded[0] == (160, 120)  # the preview, not the 800 x 600 image
    loaded.clear()
    pil_to_tensor(str(path), 128, 3)
    assert loaded[0] == (800, 600)  # a 160 x 120 preview is below 128 x 128: the image itself
    reference = np.asarray(Image.fromarray(photo).resize((32, 32), Image.BILINEAR)).transpose(2, 0, 1)
    assert np.abs(small.numpy().astype(float) - reference).mean() < 3


def test_hf_images_stay_encoded_until_decoded_once_at_a_reduced_scale(tmp_path, monkeypatch):
    """The split's images are read from their encoded bytes by the folder's reader (JPEGs at a reduced scale), one at
    a time; `datasets` decoded each at full size (before version 4, all of them at load)."""
    import datasets
    from PIL import Image as PILImage
    from PIL import JpegImagePlugin

    rng = np.random.default_rng(0)
    for i in range(12):
        PILImage.fromarray(rng.integers(0, 255, (192, 256, 3), dtype=np.uint8)).save(tmp_path / f"{i}.jpg")
    files = [str(tmp_path / f"{i}.jpg") for i in range(12)]
    ds = datasets.Dataset.from_dict({"image": files, "label": ["a", "b"] * 6}).cast_column("image", datasets.Image())
    ds.to_parquet(str(tmp_path / "x.parquet"))
    cfg = DataConfig(source="hf", files=[str(tmp_path / "x.parquet")], image_size=8, channels=3)
    scaled = []
    real = JpegImagePlugin.JpegImageFile.draft
    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft",
                        lambda self, mode, size: (real(self, mode, size), scaled.append(self.size))[0])
    split = load_images(cfg, "train")
    assert scaled == []  # nothing decoded by loading
    held = decoded_once(split, cfg, "train images", always=True)
    assert len(scaled) == len(split) and set(scaled) == {(32, 24)}  # 1/8 of each side, still above 8 px
    for row, source_row in enumerate(held.ids):  # the carve's rows, by their row in the file
        with PILImage.open(files[source_row]) as full:
            want = pil_to_tensor(full.convert("RGB"), 8, 3)
        assert (held.dataset.images[row].float() - want.float()).abs().mean() < 4


def test_a_file_is_converted_once_per_decode(tmp_path, monkeypatch):
    """pil_to_tensor converted a file's image twice (once inside the open file, once after): one pass is the work."""
    _folder(tmp_path / "pets", n=1)
    calls = []
    real = images.to_8bit
    monkeypatch.setattr(images, "to_8bit", lambda img, channels: calls.append(img.size) or real(img, channels))
    pil_to_tensor(str(tmp_path / "pets" / "cat" / "0.png"), 8, 3)
    assert calls == [(20, 20)]
