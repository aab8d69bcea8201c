"""Users' own data: folder split layouts, unlabeled pools, own test/validation files, string labels, run-dir
policy, thread count, --help, embeddings export, encode() and the report's wording. CPU, tiny data made here."""
import dataclasses
import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import ROOT, SMALL_TEXT_MODEL, one_line_error, run_stage
from ssl_pipeline import progress
from ssl_pipeline.cli import embed_main, finetune_main, pretrain_main
from ssl_pipeline.config import DataConfig, help_text, load_config
from ssl_pipeline.data.images import load_images
from ssl_pipeline.data.text import load_texts
from ssl_pipeline.errors import UserError

SMALL = ["pretrain.max_steps=2", "pretrain.batch_size=4", "model.projection_hidden_dim=32", "data.image_size=16",
         "model.backbone=ssl_cnn6"]
FT = ["finetune.label_fractions=[1.0]", "finetune.min_steps=2", "finetune.max_steps=2", "finetune.epochs=1"]


def _images(root, classes, n=5, size=12):
    for c_i, c in enumerate(classes):
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.new("RGB", (size, size), (40 * c_i, 20 * i, 100)).save(root / c / f"{c}_{i}.png")


# ------------------------------------------------------------------------------------------- image folders

def test_folder_split_layout_is_read_as_splits(tmp_path, capsys):
    progress._SAID.clear()
    root = tmp_path / "shapes"
    _images(root / "train", ["circle", "square"], n=6)
    _images(root / "val", ["circle", "square"], n=2)
    _images(root / "test", ["square", "circle"], n=3)
    _images(root / "unlabeled", ["misc"], n=4)
    (root / "unlabeled" / "misc" / "clip.mov").write_bytes(b"\0")
    d = DataConfig(source="folder", root=str(root), image_size=8)
    train, val, test = (load_images(d, s) for s in ("train", "validation", "test"))
    assert (f"data.root {root}: 12 images in 2 classes (circle, square) + 4 unlabeled (pretraining only); skipped "
            "files: 1 not images (.mov)") in capsys.readouterr().out  # nothing carved: test/ is the test split
    assert train.class_names == ["circle", "square"] and len(train) == 12  # nothing carved: test/ is the test split
    assert len(val) == 4 and len(test) == 6
    # the same class id means the same class in every split, whatever order the folders were made in
    assert all(("circle" in p) == (int(l) == 0) for p, l in zip(test.ids, test.labels))
    pre = load_images(d, "pretrain")
    assert len(pre) == 12 + 4 and pre.labels is None  # train + unlabeled/, never val/ or test/
    assert not any("/test/" in p or "/val/" in p for p in pre.ids)


def test_class_folders_beside_an_unlabeled_folder_pretrain_on_both_and_carve_from_the_classes(tmp_path, capsys):
    """The layout of 'a few labeled, many unlabeled': ROOT/CLASS/ + ROOT/unlabeled/ (a link to the raw pool here).
    It was refused as 'names look like splits'; unlabeled/ must not become a third class either."""
    progress._SAID.clear()
    root = tmp_path / "charts"
    _images(root, ["bar", "pie"], n=10)
    _images(tmp_path / "raw", ["any"], n=7)
    (root / "unlabeled").symlink_to(tmp_path / "raw")
    d = DataConfig(source="folder", root=str(root), image_size=8)
    train, test, pre = (load_images(d, s) for s in ("train", "test", "pretrain"))
    assert (f"data.root {root}: 20 images in 2 classes (bar, pie) + 7 unlabeled (pretraining only); a stratified 20% "
            "test split is carved out") in capsys.readouterr().out
    assert train.class_names == ["bar", "pie"] and len(train) == 16 and len(test) == 4
    assert not any("unlabeled" in p for p in train.ids + test.ids)
    assert len(pre) == 16 + 7 and not set(pre.ids) & set(test.ids)
    assert sum("/unlabeled/" in p for p in pre.ids) == 7
    # one class folder beside unlabeled/ is still ambiguous (a class? a split layout?): refused, naming the layouts
    solo = tmp_path / "solo"
    _images(solo, ["bar"], n=3)
    (solo / "unlabeled").symlink_to(tmp_path / "raw")
    with pytest.raises(UserError) as err:
        load_images(DataConfig(source="folder", root=str(solo), image_size=8), "pretrain")
    assert "optionally beside unlabeled/" in str(err.value)


def test_folder_images_of_every_common_kind_decode_to_what_a_viewer_shows(tmp_path):
    """16-bit and float greyscale, transparent PNGs and EXIF-rotated photos: PIL's plain `convert` turns the first
    white, the second black, drops the transparent background's colour and ignores the rotation."""
    ramp = np.linspace(0, 1, 8 * 8).reshape(8, 8)
    Image.fromarray((ramp * 65535).astype(np.uint16)).save(tmp_path / "xray16.png")
    Image.fromarray(ramp.astype(np.float32)).save(tmp_path / "float.tif")
    glyph = np.zeros((8, 8, 4), np.uint8)  # black line art, transparent (and black) elsewhere
    glyph[2:6, 3, 3] = 255
    Image.fromarray(glyph, "RGBA").save(tmp_path / "glyph.png")
    palette = Image.fromarray(glyph[..., 3] // 255, "P")  # index 0 transparent, index 1 black
    palette.putpalette([0, 0, 0] * 256)
    palette.save(tmp_path / "palette.png", transparency=0)
    photo = np.zeros((8, 16, 3), np.uint8)
    photo[:, :8] = 255  # left half white
    exif = Image.new("RGB", (1, 1)).getexif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to view"
    Image.fromarray(photo).save(tmp_path / "phone.jpg", exif=exif, quality=95)

    def decoded(name, channels=1, size=8):
        return load_images(DataConfig(source="folder", root=str(tmp_path), image_size=size, channels=channels),
                           "pretrain").dataset[[p.endswith(name) for p in ids].index(True)]["images"]

    ids = load_images(DataConfig(source="folder", root=str(tmp_path), image_size=8), "pretrain").ids
    expected = torch.from_numpy(np.rint(ramp * 255)).to(torch.uint8)[None]
    assert (decoded("xray16.png").int() - expected.int()).abs().max() <= 1  # the range kept, not clipped at 255
    assert (decoded("float.tif").int() - expected.int()).abs().max() <= 1
    assert (decoded("xray16.png", channels=3) == expected.expand(3, -1, -1)).float().mean() > 0.9
    for name in ("glyph.png", "palette.png"):
        g = decoded(name)[0]
        assert (g[2:6, 3] == 0).all() and (g[:, :3] == 255).all() and (g[:, 4:] == 255).all(), (name, g)
    upright = decoded("phone.jpg", size=16)[0].float()  # viewed upright: 16 tall, the white half on top
    assert upright[:6].mean() > 200 and upright[10:].mean() < 50, upright


def test_phone_and_web_formats_are_images_and_other_files_are_counted(tmp_path, capsys):
    """An iPhone export (HEIC beside its Live Photo .MOV clips), AVIF, JFIF, JPEG 2000 and Targa files are images;
    the listing used to take ten suffixes, so such a folder was silently read as its few PNGs. Files that are not
    images are named in the folder's summary line instead of vanishing."""
    from ssl_pipeline.data.image_formats import register_decoders

    register_decoders()  # to write the HEIC files here (the library registers it where it reads them)
    progress._SAID.clear()
    colours = {"beach": (230, 200, 120), "forest": (20, 120, 40)}
    suffixes = [".HEIC", ".heif", ".avif", ".jfif", ".jp2", ".tga", ".qoi", ".png"]
    for name, rgb in colours.items():
        (tmp_path / name).mkdir()
        for i, suffix in enumerate(suffixes):
            Image.new("RGB", (40, 30), rgb).save(tmp_path / name / f"IMG_{i}{suffix}",
                                                 format={".heic": "HEIF", ".jfif": "JPEG"}.get(suffix.lower()))
        (tmp_path / name / "IMG_0.MOV").write_bytes(b"\0" * 64)
    (tmp_path / "beach" / "notes.txt").write_text("shot in June")
    d = DataConfig(source="folder", root=str(tmp_path), image_size=8, channels=3, test_fraction=0.25)
    train, test = load_images(d, "train"), load_images(d, "test")
    assert len(train) + len(test) == 16 and len(test) == 4
    for split in (train, test):
        for i, path in enumerate(split.ids):
            pixels = split.dataset[i]["images"].float().mean(dim=(1, 2))
            want = torch.tensor(colours["beach" if "/beach/" in path else "forest"], dtype=torch.float)
            assert (pixels - want).abs().max() < 6, (path, pixels)  # decoded, and to the right colour
    assert {os.path.splitext(p)[1] for p in train.ids + test.ids} == set(suffixes)
    said = capsys.readouterr().out
    assert (f"data.root {tmp_path}: 16 images in 2 classes (beach, forest); a stratified 25% test split is carved "
            "out; skipped files: 3 not images (.mov, .txt)") in said, said
    assert said.count("data.root") == 1  # once per process, whatever the splits read


def test_vector_drawings_are_named_as_such_not_just_skipped(tmp_path, capsys):
    """Clip art and icon sets ship SVGs beside PNGs: the user is told those drawings are not read and how to use
    them, in the summary line and, for a folder of drawings only, in the error instead of 'no images found'."""
    progress._SAID.clear()
    _images(tmp_path / "art", ["hats", "fruit"], n=4)
    for name in ("hats/cap.svg", "hats/crown.SVG", "fruit/pear.eps", "fruit/pear.ogg"):
        (tmp_path / "art" / name).write_text("<svg/>")
    load_images(DataConfig(source="folder", root=str(tmp_path / "art")), "pretrain")
    said = capsys.readouterr().out
    assert ("skipped files: 4 not images (.eps, .ogg, .svg), 3 of them vector drawings (.eps, .svg), which are not "
            "read: render them to PNG to use them") in said, said
    (tmp_path / "only" / "a").mkdir(parents=True)
    (tmp_path / "only" / "a" / "x.svg").write_text("<svg/>")
    with pytest.raises(UserError) as err:
        load_images(DataConfig(source="folder", root=str(tmp_path / "only")), "pretrain")
    assert "no images found" in str(err.value) and "it holds 1 vector drawing (.svg)" in str(err.value)
    assert "task=mlm" not in str(err.value)


@pytest.mark.parametrize("dirs", [["train", "cats"], ["test", "val"], ["train", "val", "validation"], ["train"] * 0 + ["Test", "dogs"]])
def test_split_like_class_names_are_refused(tmp_path, dirs):
    for d in dirs:
        _images(tmp_path / "r" / d, ["a", "b"], n=1)
    with pytest.raises(UserError) as err:
        load_images(DataConfig(source="folder", root=str(tmp_path / "r")), "train")
    assert "look like splits" in str(err.value) and "accepted layouts" in str(err.value)


def test_unlabeled_folder_pretrains_on_every_image_and_cannot_finetune(tmp_path, capsys):
    root = tmp_path / "pool"
    root.mkdir()
    for i in range(10):
        Image.new("L", (10, 10), i * 20).save(root / f"{i}.png")
    pre = load_images(DataConfig(source="folder", root=str(root)), "pretrain")
    assert len(pre) == 10  # no test split carved out of an unlabeled pool
    with pytest.raises(UserError) as err:
        load_images(DataConfig(source="folder", root=str(root)), "train")
    assert "unlabeled" in str(err.value) and "class" in str(err.value)


def test_folder_listing_follows_linked_class_folders_once_and_checks_headers_in_processes(tmp_path, monkeypatch):
    """Class folders that are symlinks (to another disk) are read; a link cycle is read once; hidden entries are
    skipped; the header check gives the same verdicts in worker processes as in threads."""
    from ssl_pipeline.data import headers
    from ssl_pipeline.data.images import _list_images

    elsewhere = tmp_path / "disk2"
    _images(elsewhere, ["cat"], n=3)
    root = tmp_path / "pool"
    _images(root, ["dog"], n=3)
    (root / "cat").symlink_to(elsewhere / "cat", target_is_directory=True)
    (root / "dog" / "loop").symlink_to(root / "dog", target_is_directory=True)  # a cycle
    (root / ".thumbnails").mkdir()
    Image.new("RGB", (4, 4)).save(root / ".thumbnails" / "t.png")
    (root / "dog" / "broken.png").write_bytes(b"not a png")
    files = _list_images(root)
    assert [os.path.relpath(f, root) for f in files] == (
        ["cat/cat_0.png", "cat/cat_1.png", "cat/cat_2.png", "dog/broken.png", "dog/dog_0.png", "dog/dog_1.png",
         "dog/dog_2.png"])
    threads = headers.readable(files)
    monkeypatch.setattr(headers, "PROCESS_THRESHOLD", 1)
    assert headers.readable(files, workers=2) == threads == [True] * 3 + [False] + [True] * 3
    pool = load_images(DataConfig(source="folder", root=str(root), skip_corrupt=True, image_size=8, channels=3),
                       "pretrain")
    assert len(pool) >= 3 and not any("broken" in f for f in pool.ids)  # the carve keeps some of the 6 good ones
    test = load_images(DataConfig(source="folder", root=str(root), skip_corrupt=True, image_size=8, channels=3), "test")
    assert test.class_names == ["cat", "dog"]


def test_unreadable_folder_is_named(tmp_path, monkeypatch):
    _images(tmp_path / "pool", ["a", "b"], n=2)
    real = os.scandir

    def scandir(path):
        if str(path).endswith("/b"):
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    with pytest.raises(UserError, match=r"cannot list the folder .*pool/b: Permission denied"):
        load_images(DataConfig(source="folder", root=str(tmp_path / "pool")), "train")


def test_images_over_pillows_bomb_limit_are_read_and_the_limit_is_named(tmp_path, monkeypatch):
    """A 180-megapixel scan is past Pillow's decompression-bomb guard (an error over 179 MP, meant for files from
    strangers) and was refused as "not a readable image". The user's own large images are read (up to
    image_formats.MAX_MEGAPIXELS); larger ones are refused with their size, and the decoder refuses them too."""
    from ssl_pipeline.data import image_formats
    from ssl_pipeline.data.images import pil_to_tensor

    _images(tmp_path / "scans", ["a", "b"], n=3)
    huge = tmp_path / "scans" / "b" / "huge.png"
    Image.new("1", (18_000, 10_000), 1).save(huge)  # 22 kB on disk
    cfg = DataConfig(source="folder", root=str(tmp_path / "scans"), image_size=8, channels=1)
    monkeypatch.setattr(image_formats, "MAX_MEGAPIXELS", 100)
    with pytest.raises(UserError, match=r"^not a readable image: .*huge.png \(18,000 x 10,000 pixels \(180 megapixels\), "
                                        r"more than the 100 read: shrink it or cut it into tiles\); remove it or set "):
        load_images(cfg, "pretrain")
    with pytest.raises(ValueError, match="it is 18,000 x 10,000 pixels"):
        pil_to_tensor(str(huge), 8, 1)
    monkeypatch.setattr(image_formats, "MAX_MEGAPIXELS", 500)
    pool = load_images(cfg, "pretrain")
    assert str(huge) in pool.ids
    assert pil_to_tensor(str(huge), 8, 1).float().mean() == 255  # white, decoded and shrunk


def test_folder_test_class_unknown_to_train_is_named(tmp_path):
    root = tmp_path / "r"
    _images(root / "train", ["circle", "square"], n=2)
    _images(root / "test", ["circle", "triangle"], n=2)
    with pytest.raises(UserError) as err:
        load_images(DataConfig(source="folder", root=str(root)), "test")
    assert "class 'triangle'" in str(err.value)


def test_folder_with_splits_end_to_end_uses_val_for_validation(tmp_path, capsys):
    root = tmp_path / "shapes"
    _images(root / "train", ["circle", "square"], n=6)
    _images(root / "validation", ["circle", "square"], n=2)
    _images(root / "test", ["circle", "square"], n=3)
    out = tmp_path / "run"
    args = ["--config", "configs/vision/simclr_digits.yaml", "data.source=folder", f"data.root={root}",
            f"output_dir={out}", *SMALL]
    pretrain_main(args)
    capsys.readouterr()
    finetune_main(args + FT + ["finetune.evaluate_on=validation", "finetune.seeds=[0]", "finetune.methods=[knn,classic]"])
    assert "12 labeled train / 4 validation examples" in capsys.readouterr().out  # not "test examples"
    doc = json.loads((out / "validation" / "label_efficiency.json").read_text())
    assert doc["n_test"] == 4 and doc["n_train"] == 12 and doc["class_names"] == ["circle", "square"]
    assert str(root) in doc["data"] and "ssl_cnn6" in doc["encoder_model"]
    md = (out / "validation" / "label_efficiency.md").read_text()
    assert "n = 1" in md and "±" not in md.split("| method |")[1].split("\n\n")[0]
    assert "circle, square" in md
    # the test report headlines the SSL row the validation run ranked first (knn, the only one there), not the best
    # of knn and linear_probe on test
    capsys.readouterr()
    finetune_main(args + FT + ["finetune.seeds=[0]", "finetune.methods=[knn,linear_probe,classic]"])
    said = capsys.readouterr().out
    assert "12 labeled train / 6 test examples" in said
    assert f"ranked first in {out / 'validation' / 'label_efficiency.json'} (this encoder's validation run, at its " \
        "budgets of" in said
    test = json.loads((out / "label_efficiency.json").read_text())
    assert test["n_test"] == 6
    assert test["ssl_choice"]["report"] == str(out / "validation" / "label_efficiency.json")
    assert [(g["best_ssl_method"], g["chosen_on"]) for g in test["gain_over_best_baseline"]] == [("knn", "validation")]


# ---------------------------------------------------------------------------------------------------- text

def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _review(i, label):
    word = "great lovely fine" if label == "pos" else "awful broken sad"
    return {"text": f"review {i}: this thing is {word} and number {i}", "label": label}


def test_own_test_and_validation_files_are_not_carved_nor_pretrained_on(tmp_path):
    train = _jsonl(tmp_path / "train.jsonl", [_review(i, "pos" if i % 2 else "neg") for i in range(40)])
    test = _jsonl(tmp_path / "test.jsonl", [_review(100 + i, "neg" if i % 2 else "pos") for i in range(10)])
    val = _jsonl(tmp_path / "val.jsonl", [_review(200 + i, "pos") for i in range(4)])
    d = DataConfig(source="jsonl", files=[str(train)], test_files=[str(test)], validation_files=[str(val)])
    tr, te, va, pre = (load_texts(d, s) for s in ("train", "test", "validation", "pretrain"))
    assert len(tr) == 40 and len(te) == 10 and len(va) == 4 and len(pre) == 40
    assert tr.class_names == ["neg", "pos"] and list(te.labels[:2]) == [1, 0]
    assert not set(pre.texts) & set(te.texts)
    with pytest.raises(UserError) as err:
        load_texts(DataConfig(source="jsonl", files=[str(train)], test_files=[str(train)]), "test")
    assert "must not be in the training pool" in str(err.value)
    # without them: the test split is carved (stratified) and excluded from pretraining
    carved = DataConfig(source="jsonl", files=[str(train)])
    assert len(load_texts(carved, "pretrain")) == 32 and load_texts(carved, "validation") is None


def test_hf_local_directory_with_string_labels(tmp_path):
    ds_dir = tmp_path / "reviews"
    ds_dir.mkdir()
    _jsonl(ds_dir / "train.jsonl", [_review(i, "pos" if i % 3 else "neg") for i in range(30)])
    _jsonl(ds_dir / "test.jsonl", [_review(50 + i, "neg" if i % 2 else "pos") for i in range(8)])
    d = DataConfig(source="hf", name=str(ds_dir))
    train, test = load_texts(d, "train"), load_texts(d, "test")
    assert train.class_names == ["neg", "pos"] and len(train) == 30 and len(test) == 8
    assert test.labels.tolist() == [1, 0] * 4
    assert len(load_texts(d, "pretrain")) == 30  # the hub-style test file is never pretrained on


def test_datasets_saved_to_disk_are_read_by_the_starting_configs(tmp_path):
    """What `Dataset.save_to_disk` / `DatasetDict.save_to_disk` write: `load_dataset` refuses a saved Dataset ("use
    load_from_disk"), and a starting config's data.root read the directory as a folder of .arrow files. Now
    data.root=SAVED (or data.source=hf data.name=SAVED) reads it: its own splits, or a carve; images too."""
    import datasets

    names = ["dogs", "cats"]
    texts = datasets.Dataset.from_dict({"text": [f"a note {i} about {names[i % 2]}" for i in range(40)],
                                        "label": [i % 2 for i in range(40)]},
                                       features=datasets.Features({"text": datasets.Value("string"),
                                                                   "label": datasets.ClassLabel(names=names)}))
    texts.save_to_disk(str(tmp_path / "notes"))
    cfg = load_config("configs/text/mlm_files.yaml", [f"data.root={tmp_path / 'notes'}"]).data
    assert (cfg.source, cfg.name) == ("hf", str(tmp_path / "notes"))
    train, test, pre = (load_texts(cfg, s) for s in ("train", "test", "pretrain"))
    assert train.class_names == names and len(train) == 32 and len(test) == 8 and len(pre) == 32
    assert all(names[lab] in t for t, lab in zip(train.texts, train.labels.tolist()))
    streamed = load_config("configs/text/mlm_files.yaml", [f"data.root={tmp_path / 'notes'}", "data.streaming=true"])
    from ssl_pipeline.data.hf import stream_train
    assert next(iter(stream_train(streamed.data.name, None, "notes")))["text"] == "a note 0 about dogs"

    # a hub dataset as `huggingface-cli download` leaves it: the README was read as the one document of a folder
    snapshot = tmp_path / "snapshot"
    (snapshot / "data").mkdir(parents=True)
    (snapshot / "README.md").write_text("---\nlicense: mit\n---\n# Notes\nA dataset card.\n")
    texts.to_parquet(snapshot / "data" / "train-00000-of-00001.parquet")
    texts.select(range(10)).to_parquet(snapshot / "data" / "test-00000-of-00001.parquet")
    cfg = load_config("configs/text/mlm_files.yaml", [f"data.root={snapshot}"]).data
    assert (cfg.source, cfg.name) == ("hf", str(snapshot))
    assert len(load_texts(cfg, "pretrain")) == 40 and len(load_texts(cfg, "test")) == 10  # its own test split

    colours = [(200, 30, 30), (30, 30, 200)]
    split = lambda n: datasets.Dataset.from_dict(  # noqa: E731
        {"image": [Image.new("RGB", (20, 12), colours[i % 2]) for i in range(n)], "label": [i % 2 for i in range(n)]},
        features=datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=["red", "blue"])}))
    datasets.DatasetDict({"train": split(12), "test": split(4)}).save_to_disk(str(tmp_path / "swatches"))
    cfg = load_config("configs/vision/simclr_folder.yaml", [f"data.root={tmp_path / 'swatches'}", "data.image_size=8"]).data
    assert cfg.source == "hf"
    train, test = load_images(cfg, "train"), load_images(cfg, "test")
    assert train.class_names == ["red", "blue"] and len(train) == 12 and len(test) == 4
    first = train.dataset[1]["images"].float().mean(dim=(1, 2))
    assert int(train.labels[1]) == 1 and (first - torch.tensor(colours[1], dtype=torch.float)).abs().max() < 3


def test_a_table_of_image_paths_with_its_own_test_table(tmp_path, monkeypatch, capsys):
    """Kaggle's layout: images/ beside train.csv and test.csv whose rows name `images/001.jpg`. The paths were read
    from the working directory, and data.test_files was silently ignored for every source but text files (a carve
    of train.csv was scored instead of test.csv). Now paths start at the table's folder, from anywhere, the
    image-folder starting config reads the table, and the test table is the test split."""
    (tmp_path / "kaggle" / "images").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    colours = {"red": (220, 20, 20), "blue": (20, 20, 220)}
    rows = []
    for i in range(24):
        name = "red" if i % 2 else "blue"
        Image.new("RGB", (16, 16), colours[name]).save(tmp_path / "kaggle" / "images" / f"{i:03d}.jpg")
        rows.append(f"images/{i:03d}.jpg,{name}\n")
    (tmp_path / "kaggle" / "train.csv").write_text("image,label\n" + "".join(rows[:18]))
    (tmp_path / "kaggle" / "test.csv").write_text("image,label\n" + "".join(rows[18:]))
    monkeypatch.chdir(tmp_path / "elsewhere")
    args = [f"data.files=[{tmp_path / 'kaggle' / 'train.csv'}]", f"data.test_files=[{tmp_path / 'kaggle' / 'test.csv'}]",
            "data.image_size=8"]
    cfg = load_config(f"{ROOT}/configs/vision/simclr_folder.yaml", args).data
    assert cfg.source == "hf"
    pre, train, test = (load_images(cfg, s) for s in ("pretrain", "train", "test"))
    assert len(pre) == len(train) == 18 and len(test) == 6  # nothing carved: the test table is the test split
    assert test.class_names == ["blue", "red"] and test.labels.tolist() == [0, 1] * 3
    for split in (train, test):
        for i in range(len(split)):
            pixels = split.dataset[i]["images"].float().mean(dim=(1, 2))
            want = torch.tensor(colours[split.class_names[int(split.labels[i])]], dtype=torch.float)
            assert (pixels - want).abs().max() < 8
    # the same table as a European Excel writes it: semicolons, a byte-order mark (read as the csv source reads)
    (tmp_path / "kaggle" / "excel.csv").write_text("image;label\n" + "".join(r.replace(",", ";") for r in rows[:18]),
                                                   encoding="utf-8-sig")
    semi = load_config(f"{ROOT}/configs/vision/simclr_folder.yaml",
                       [f"data.files=[{tmp_path / 'kaggle' / 'excel.csv'}]", *args[1:]]).data
    assert load_images(semi, "train").ids == train.ids and load_images(semi, "train").class_names == ["blue", "red"]
    (tmp_path / "kaggle" / "bad.csv").write_text("image,label\n" + "".join(f"photos/{i:03d}.jpg,{'red' if i % 2 else 'blue'}\n"
                                                                          for i in range(8)))
    with pytest.raises(UserError) as err:
        load_images(load_config(f"{ROOT}/configs/vision/simclr_folder.yaml",
                                [f"data.files=[{tmp_path / 'kaggle' / 'bad.csv'}]"]).data, "pretrain")
    assert "holds paths such as 'photos/0" in str(err.value) and "neither under the table's folder" in str(err.value)
    # paths are no text: 'images/aB3.png' and 'images/Ab3.png' (ids in mixed case) were "copies" for the carve
    names = [f"images/{head}{k}.png" for k in range(1, 13) for head in ("aB", "Ab")]
    for i, name in enumerate(names):
        Image.new("RGB", (8, 8), colours["red" if i % 2 else "blue"]).save(tmp_path / "kaggle" / name)
    table = tmp_path / "kaggle" / "paths.csv"
    table.write_text("image,label\n" + "".join(f"{n},{'red' if i % 2 else 'blue'}\n" for i, n in enumerate(names)))
    from ssl_pipeline.data.splits import carve
    cfg = load_config(f"{ROOT}/configs/vision/simclr_folder.yaml", [f"data.files=[{table}]", "data.test_fraction=0.5"]).data
    test = load_images(cfg, "test")
    assert test.ids == carve(np.array([i % 2 for i in range(len(names))]), "test", cfg, ["blue", "red"]).tolist()
    (tmp_path / "kaggle" / "species.csv").write_text("image,species\n" + "".join(rows[:6]))
    with pytest.raises(UserError) as err:  # fine-tuning a table whose label column has another name
        load_images(load_config(f"{ROOT}/configs/vision/simclr_folder.yaml",
                                [f"data.files=[{tmp_path / 'kaggle' / 'species.csv'}]"]).data, "train")
    assert "no labels to fine-tune on (its columns: image, species); set data.label_column" in str(err.value)
    with pytest.raises(UserError) as err:  # a source that has its own test split: the key is refused, not ignored
        load_config(f"{ROOT}/configs/vision/simclr_digits.yaml", [f"data.test_files=[{tmp_path / 'kaggle' / 'test.csv'}]"])
    assert "data.test_files is read by file sources" in str(err.value)


def test_hf_rows_without_a_label_are_pretraining_only(tmp_path, capsys):
    """Hub-style data marks unlabeled rows with an empty label or a ClassLabel's -1 (STL-10 style)."""
    import datasets

    names = ["neg", "pos"]
    rows = {"text": [f"review number {i} says {'yes' if i % 2 else 'no'}" for i in range(40)],
            "label": [i % 2 if i < 20 else -1 for i in range(40)]}
    features = datasets.Features({"text": datasets.Value("string"), "label": datasets.ClassLabel(names=names)})
    datasets.Dataset.from_dict(rows, features=features).to_parquet(tmp_path / "classlabel.parquet")
    ds_dir = tmp_path / "reviews"
    ds_dir.mkdir()
    _jsonl(ds_dir / "train.jsonl", [_review(i, names[i % 2]) for i in range(20)] +
           [{"text": f"unlabeled remark {i}"} for i in range(20)])
    for d in (DataConfig(source="hf", files=[str(tmp_path / "classlabel.parquet")]), DataConfig(source="hf", name=str(ds_dir))):
        train, test, pre = (load_texts(d, s) for s in ("train", "test", "pretrain"))
        assert train.class_names == names and len(train) == 16 and len(test) == 4, d
        assert len(pre) == 16 + 20 and not set(pre.texts) & set(test.texts) and set(train.texts) <= set(pre.texts)
        assert ("20 texts in 2 classes (neg, pos) + 20 with no label (pretraining only); a stratified 20% test split "
                "is carved out") in capsys.readouterr().out
    # blank texts are neither examples nor unlabeled data: dropped before the carve, and the line counts them
    blanks = {"text": rows["text"] + ["", "   ", None], "label": rows["label"] + [0, -1, 1]}
    datasets.Dataset.from_dict(blanks, features=features).to_parquet(tmp_path / "blanks.parquet")
    d = DataConfig(source="hf", files=[str(tmp_path / "blank*.parquet")])  # a glob: the line names the files read
    train, test, pre = (load_texts(d, s) for s in ("train", "test", "pretrain"))
    assert len(train) == 16 and len(test) == 4 and len(pre) == 36 and all(t.strip() for t in pre.texts)
    assert ("data.files blanks.parquet: 20 texts in 2 classes (neg, pos) + 20 with no label (pretraining only); a "
            "stratified 20% test split is carved out; skipped rows: 3 with no text") in capsys.readouterr().out


def test_unlabeled_text_corpus_pretrains_on_every_line(tmp_path, capsys):
    corpus = tmp_path / "notes.txt"
    corpus.write_text("".join(f"note number {i} about something\n" for i in range(25)))
    assert len(load_texts(DataConfig(source="text", files=[str(corpus)]), "pretrain")) == 25
    assert capsys.readouterr().out == "data.files notes.txt: 25 unlabeled texts\n"
    # labels under another name: pretrained on whole, and the user is told before fine-tuning carves a test split
    sheet = tmp_path / "sheet.csv"
    sheet.write_text("text,category\n" + "".join(f"note {i},{i % 2}\n" for i in range(25)))
    assert len(load_texts(DataConfig(source="csv", files=[str(sheet)]), "pretrain")) == 25
    assert ("data.label_column 'label' is not a column of the csv corpus (columns: text, category): every row is "
            "pretrained on as unlabeled text") in capsys.readouterr().out
    with pytest.raises(UserError) as err:  # fine-tuning names the columns there are
        load_texts(DataConfig(source="csv", files=[str(sheet)]), "train")
    assert str(err.value).endswith("it has no labels to fine-tune on (its columns: text, category); set "
                                   "data.label_column to the one holding the labels")


def _table(path, rows, sep=",", encoding="utf-8"):
    import csv

    with open(path, "w", encoding=encoding, newline="") as f:
        csv.writer(f, delimiter=sep).writerows([("text", "label")] + rows)
    return str(path)


def test_text_files_as_users_have_them(tmp_path, capsys):
    """Excel's cp1252, semicolon- and tab-separated files, and a label column that is only partly filled in."""
    rows = [(f"caf\u00e9 review {i} {'good fine' if i % 2 else 'bad awful'}", "pos" if i % 2 else "neg")
            for i in range(20)]
    latin = _table(tmp_path / "excel.csv", rows, encoding="cp1252")
    with pytest.raises(UserError) as err:
        load_texts(DataConfig(source="csv", files=[latin]), "train")
    assert f"{latin} is not utf-8 text (byte 0xe9" in str(err.value) and "data.encoding" in str(err.value)
    for path, extra in ((latin, {"encoding": "cp1252"}), (_table(tmp_path / "semi.csv", rows, sep=";"), {}),
                        (_table(tmp_path / "tabs.tsv", rows, sep="\t"), {}),
                        (_table(tmp_path / "pipes.txt", rows, sep="|"), {"csv_delimiter": "|"})):
        train = load_texts(DataConfig(source="csv", files=[path], **extra), "train")
        assert train.class_names == ["neg", "pos"] and len(train) == 16, path
        assert all(t.startswith("caf\u00e9 review") for t in train.texts), (path, train.texts[0])

    partly = _table(tmp_path / "partly.csv", rows + [(f"unlabeled note {i}", "") for i in range(30)])
    d = DataConfig(source="csv", files=[partly])
    train, test, pre = (load_texts(d, s) for s in ("train", "test", "pretrain"))
    assert ("data.files partly.csv: 20 texts in 2 classes (neg, pos) + 30 with no label (pretraining only); a "
            "stratified 20% test split is carved out") in capsys.readouterr().out
    assert len(train) == 16 and len(test) == 4 and not any("unlabeled" in t for t in train.texts + test.texts)
    assert len(pre) == 16 + 30 and not set(pre.texts) & set(test.texts)  # the unlabeled rows, never the test carve
    numeric = tmp_path / "numeric.csv"
    numeric.write_text("text,label\n" + "".join(f"row {i},{'' if i % 5 == 0 else i % 2}\n" for i in range(20)))
    assert load_texts(DataConfig(source="csv", files=[str(numeric)]), "train").class_names == ["0", "1"]  # not 0.0


def test_labels_typed_by_hand_are_one_class_per_spelling(tmp_path, capsys):
    """'pos ' with a trailing space made a class of its own beside 'pos' (a third class of two rows, and a carve
    error when it had one); it is 'pos' now. Names differing only in case stay apart, with a note, once."""
    progress._SAID.clear()
    rows = [(f"review {i} {'good fine' if i % 2 else 'bad awful'}", ["neg", "pos"][i % 2]) for i in range(20)]
    rows += [("review 20 good fine", "pos "), ("review 21 bad awful", " neg"), ("review 22 so so", "Meh"),
             ("review 23 so so", "meh"), ("review 24 so so", "meh"), ("review 25 so so", "Meh")]
    d = DataConfig(source="csv", files=[_table(tmp_path / "typed.csv", rows)])
    train, test = load_texts(d, "train"), load_texts(d, "test")
    assert train.class_names == ["Meh", "meh", "neg", "pos"]
    assert len(train) + len(test) == 26
    said = capsys.readouterr().out
    assert said.count("note: the training data has classes 'Meh' and 'meh', which differ only in case") == 1, said


def test_numeric_labels_are_values_unless_they_are_class_ids_and_quantities_are_named(tmp_path, capsys):
    """Star ratings 1-5 were class ids: "6 classes (0, 1, 2, 3, 4, 5)" with an empty class 0 (three years made
    2,011 classes). Integer labels are ids only when they are 0..K-1; otherwise the classes are the values present,
    each split encoded by value. A column of measurements (many distinct numbers, a few rows each) is named as
    such, not failed at the carve with "class '3.71' has only 1 example"."""
    rows = [{"text": f"review {i} " + "good " * (i % 5), "stars": 1 + i % 5} for i in range(100)]
    d = DataConfig(source="jsonl", files=[str(_jsonl(tmp_path / "stars.jsonl", rows))], label_column="stars",
                   test_files=[str(_jsonl(tmp_path / "test.jsonl", rows[:10]))])
    progress._SAID.clear()
    train, test = load_texts(d, "train"), load_texts(d, "test")
    assert train.class_names == ["1", "2", "3", "4", "5"] and sorted(set(train.labels.tolist())) == [0, 1, 2, 3, 4]
    assert test.labels.tolist() == [i % 5 for i in range(10)]
    assert "100 texts in 5 classes (1, 2, 3, 4, 5)" in capsys.readouterr().out
    ids = [{"text": f"note {i}", "label": i % 3} for i in range(30)]
    assert load_texts(DataConfig(source="jsonl", files=[str(_jsonl(tmp_path / "ids.jsonl", ids))]), "train"
                      ).class_names == ["0", "1", "2"]
    prices = [{"text": f"flat {i}", "price": 1000 + 37 * i} for i in range(120)]
    with pytest.raises(UserError, match=r"^the training data has 120 distinct numeric labels for 120 examples \(e.g. "
                                        r"1000, .*\): a quantity to predict \(regression\), not classes"):
        load_texts(DataConfig(source="jsonl", files=[str(_jsonl(tmp_path / "prices.jsonl", prices))],
                              label_column="price"), "train")


def test_multi_label_rows_are_refused_not_read_as_new_classes(tmp_path):
    """A JSON-lines label ["bug", "ui"] became the class "['bug', 'ui']"; several labels per example are named."""
    rows = [{"text": f"issue {i}", "label": ["bug", "ui"] if i % 3 == 0 else ["bug"]} for i in range(20)]
    with pytest.raises(UserError) as err:
        load_texts(DataConfig(source="jsonl", files=[str(_jsonl(tmp_path / "issues.jsonl", rows))]), "train")
    assert "has a label that is a list (['bug', 'ui']): several labels per example (multi-label)" in str(err.value)


def test_byte_order_marks_decide_the_encoding(tmp_path):
    """Notepad's and Excel's "CSV UTF-8" mark at the start of a UTF-8 file stuck to the first document ('\\ufefffirst
    line'); a UTF-16 file (Excel's "Unicode Text", Notepad's "Unicode") stopped with advice to try cp1252 / latin-1,
    which would have read it as garbage. Under the default encoding the mark decides; files that differ are named."""
    from ssl_pipeline.data import text_folder

    rows = [(f"caf\u00e9 review {i} {'good fine' if i % 2 else 'bad awful'}", "pos" if i % 2 else "neg") for i in range(20)]
    utf16 = _table(tmp_path / "unicode.csv", rows, encoding="utf-16")
    marked = _table(tmp_path / "excel_utf8.csv", rows, encoding="utf-8-sig")
    for path in (utf16, marked):
        train = load_texts(DataConfig(source="csv", files=[path]), "train")
        assert train.class_names == ["neg", "pos"] and all(t.startswith("caf\u00e9 review") for t in train.texts), path
    lines = tmp_path / "notes.txt"
    lines.write_text("first line\nsecond line\n", encoding="utf-8-sig")
    assert load_texts(DataConfig(source="text", files=[str(lines)]), "pretrain").texts == ["first line", "second line"]
    docs = tmp_path / "docs"
    for label in ("a", "b"):
        (docs / label).mkdir(parents=True)
        for i in range(3):
            (docs / label / f"{i}.txt").write_text(f"document {i} of {label}", encoding="utf-16" if i else "utf-8-sig")
    progress._SAID.clear()
    text_folder._READ.clear()
    pre = load_texts(DataConfig(source="folder", root=str(docs), test_fraction=0.34), "pretrain")
    assert all(t.startswith("document ") for t in pre.texts), pre.texts
    with pytest.raises(UserError) as err:
        load_texts(DataConfig(source="csv", files=[marked, utf16]), "train")
    assert str(err.value) == (f"data files in different encodings: {utf16} is utf-16, {marked} is utf-8-sig; convert "
                              "them to one (UTF-8)")


def test_compressed_corpora_are_read_as_they_are(tmp_path):
    """`train.jsonl.gz`, `reviews.tsv.bz2`, `notes.txt.xz`: data.source=auto knew no compressed suffix, and the
    delimiter guess and encoding check read compressed bytes. Each reads as its uncompressed twin does, a Latin-1
    text file too (datasets' text builder decodes compressed files as UTF-8 whatever its encoding says)."""
    import bz2
    import gzip
    import lzma

    rows = [(f"caf\u00e9 review {i} {'good fine' if i % 2 else 'bad awful'}", "pos" if i % 2 else "neg")
            for i in range(20)]
    plain = {"jsonl": tmp_path / "train.jsonl", "tsv": tmp_path / "reviews.tsv", "txt": tmp_path / "notes.txt"}
    plain["jsonl"].write_text("".join(json.dumps({"text": t, "label": lab}) + "\n" for t, lab in rows))
    _table(plain["tsv"], rows, sep="\t")
    plain["txt"].write_text("".join(t + "\n" for t, _ in rows), encoding="latin-1")
    for kind, opener, suffix in (("jsonl", gzip.open, ".gz"), ("tsv", bz2.open, ".bz2"), ("txt", lzma.open, ".xz")):
        packed = str(plain[kind]) + suffix
        with opener(packed, "wb") as f:
            f.write(plain[kind].read_bytes())
        extra = ["data.encoding=latin-1"] if kind == "txt" else []
        cfg, twin = (load_config("configs/text/mlm_files.yaml", [f"data.files=[{p}]"] + extra).data
                     for p in (packed, plain[kind]))
        assert cfg.source == twin.source == {"jsonl": "jsonl", "tsv": "csv", "txt": "text"}[kind]
        for split in ("pretrain", "train", "test") if kind != "txt" else ("pretrain",):
            got, want = load_texts(cfg, split), load_texts(twin, split)
            assert got.texts == want.texts and got.class_names == want.class_names, (packed, split)
    with pytest.raises(UserError) as err:  # the encoding check reads the decompressed bytes
        load_texts(load_config("configs/text/mlm_files.yaml", [f"data.files=[{plain['txt']}.xz]"]).data, "pretrain")
    assert f"{plain['txt']}.xz is not utf-8 text (byte 0xe9 near offset 3)" in str(err.value)


def test_json_files_keeping_their_rows_under_one_key_are_read_as_those_rows(tmp_path, capsys):
    """`{"data": [{"text": ..., "label": ...}, ...]}` (many exports; SQuAD's layout, with a `version` beside it):
    `datasets` reads such a file as one row holding the list, so the text column was "not a column ... ['data']".
    Now the records are the rows, said once; a plain JSON array reads as before, and a file with two lists of
    records is still an error naming its columns rather than a guess."""
    rows = [{"text": f"review {i} {'good fine' if i % 2 else 'bad awful'}", "label": "pos" if i % 2 else "neg"}
            for i in range(20)]
    (tmp_path / "array.json").write_text(json.dumps(rows))
    (tmp_path / "export.json").write_text(json.dumps({"version": "1.1", "data": rows}))
    (tmp_path / "two.json").write_text(json.dumps({"train": rows, "extra": rows}))
    want = load_texts(load_config("configs/text/mlm_files.yaml", [f"data.files=[{tmp_path / 'array.json'}]"]).data,
                      "train")
    cfg = load_config("configs/text/mlm_files.yaml", [f"data.files=[{tmp_path / 'export.json'}]"]).data
    for split in ("pretrain", "train", "test"):
        got = load_texts(cfg, split)
        assert len(got.texts) == {"pretrain": 16, "train": 16, "test": 4}[split]
    assert load_texts(cfg, "train").texts == want.texts and load_texts(cfg, "train").class_names == ["neg", "pos"]
    said = capsys.readouterr().out
    assert said.count("export.json: the rows are the records under the key 'data'") == 1
    assert "array.json: the rows" not in said
    with pytest.raises(UserError, match=r"data.text_column 'text' is not a column of .*\['train', 'extra'\]"):
        load_texts(load_config("configs/text/mlm_files.yaml", [f"data.files=[{tmp_path / 'two.json'}]"]).data, "train")


def test_excel_workbooks_with_labels_typed_by_hand(tmp_path):
    """Labeled data often lives in .xlsx sheets: data.source=auto reads them (the first sheet), numbers typed in a
    text column stay text, empty label cells make pretraining-only rows, and two workbooks with one header are
    one table; a workbook of another header, and streaming one, are one-line errors."""
    from openpyxl import Workbook

    def workbook(path, rows, header=("Text", "Label")):
        book = Workbook()
        book.active.append(list(header))
        for row in rows:
            book.active.append(list(row))
        book.save(path)
        return str(path)

    rows = [(f"printer {i} {'jams again' if i % 2 else 'out of toner'}", "paper" if i % 2 else "toner") for i in range(30)]
    rows[3] = (42, "paper")  # a bare number typed into the text column
    first = workbook(tmp_path / "tickets.xlsx", rows[:20])
    second = workbook(tmp_path / "more.xlsx", rows[20:] + [(f"note {i}", None) for i in range(6)])
    cfg = load_config("configs/text/mlm_files.yaml", [f"data.files=[{first},{second}]"]).data
    assert cfg.source == "excel"
    train, test, pre = (load_texts(cfg, s) for s in ("train", "test", "pretrain"))
    assert train.class_names == ["paper", "toner"] and len(train) + len(test) == 30
    assert len(pre) == len(train) + 6 and "42" in train.texts + test.texts
    assert all(("jams" in t) == (names == "paper") for t, names in
               zip(train.texts, [train.class_names[i] for i in train.labels.tolist()]) if t != "42")
    other = workbook(tmp_path / "other.xlsx", rows[:4], header=("body", "queue"))
    with pytest.raises(UserError, match="different columns"):
        load_texts(load_config("configs/text/mlm_files.yaml", [f"data.files=[{first},{other}]"]).data, "pretrain")
    from ssl_pipeline.data.hf import stream_train
    with pytest.raises(UserError, match="not Excel workbooks"):
        stream_train(None, [first], "tickets")


def test_workbooks_with_several_sheets(tmp_path, capsys):
    """A workbook of monthly tabs: the first sheet by default (and a line saying there are more), one sheet by name
    with data.sheet, or all of them; a sheet that is not there names the ones that are."""
    from openpyxl import Workbook

    progress._SAID.clear()
    book = Workbook()
    book.active.title = "Jan"
    for title, start in (("Jan", 0), ("Feb", 20), ("Mar", 40)):
        sheet = book.active if title == "Jan" else book.create_sheet(title)
        sheet.append(["text", "label"])
        for i in range(start, start + 20):
            sheet.append([f"{title} ticket {i} {'jams' if i % 2 else 'toner'}", "paper" if i % 2 else "toner"])
    book.create_sheet("Notes")  # a blank tab beside the data
    path = tmp_path / "tickets.xlsx"
    book.save(path)

    def rows(*overrides):
        d = load_config("configs/text/mlm_files.yaml", [f"data.files=[{path}]", *overrides]).data
        return load_texts(d, "pretrain").texts + load_texts(d, "test").texts

    first = rows()
    assert len(first) == 20 and all(t.startswith("Jan") for t in first)
    assert ("tickets.xlsx has 4 sheets (Jan, Feb, Mar, Notes): reading the first, 'Jan' (data.sheet=NAME reads "
            "another, data.sheet=all every one)") in capsys.readouterr().out
    assert len(rows("data.sheet=Feb")) == 20 and all(t.startswith("Feb") for t in rows("data.sheet=Feb"))
    assert len(rows("data.sheet=all")) == 60
    with pytest.raises(UserError) as err:
        rows("data.sheet=April")
    assert "data.sheet 'April' is not a sheet of" in str(err.value) and "Jan, Feb, Mar, Notes" in str(err.value)
    book["Mar"].insert_rows(1)  # Mar's header pushed down a row: read as its first data row
    book["Mar"]["A1"], book["Mar"]["B1"] = "body", "queue"
    book.save(path)
    with pytest.raises(UserError) as err:
        rows("data.sheet=all")
    assert "different columns" in str(err.value) and "(sheet 'Mar')" in str(err.value)
    blank = Workbook()
    blank.save(tmp_path / "blank.xlsx")
    with pytest.raises(UserError, match="every sheet of .*blank.xlsx is empty"):
        load_texts(load_config("configs/text/mlm_files.yaml", [f"data.files=[{tmp_path / 'blank.xlsx'}]",
                                                               "data.sheet=all"]).data, "pretrain")
    with pytest.raises(UserError, match="data.sheet chooses a sheet of an Excel workbook"):  # not ignored on a csv
        load_config("configs/text/mlm_files.yaml", [f"data.files=[{tmp_path / 'tickets.csv'}]", "data.sheet=Jan"])


def test_spreadsheet_headers_in_other_case_are_the_columns(tmp_path):
    """`Text` / `Label` headers are data.text_column / data.label_column: a missed label column would make the
    corpus unlabeled and pretrain on the rows the fine-tune stage later tests on."""
    f = tmp_path / "sheet.csv"
    f.write_text("Text,Label\n" + "".join(f"note {i} {'good' if i % 2 else 'bad'},{'pos' if i % 2 else 'neg'}\n"
                                          for i in range(20)))
    d = DataConfig(source="csv", files=[str(f)])
    train, test, pre = (load_texts(d, s) for s in ("train", "test", "pretrain"))
    assert train.class_names == ["neg", "pos"] and len(train) == 16 and len(test) == 4
    assert len(pre) == 16 and not set(pre.texts) & set(test.texts)
    both = tmp_path / "both.csv"
    both.write_text("TEXT,Text,label\n" + "".join(f"a {i},b {i},{i % 2}\n" for i in range(10)))
    with pytest.raises(UserError) as err:  # two columns that differ only in case: no guess
        load_texts(DataConfig(source="csv", files=[str(both)]), "train")
    assert "data.text_column 'text' is not a column" in str(err.value)


def test_bad_text_file_settings_are_named(capsys):
    base = ["--config", "configs/text/mlm_embedded.yaml"]
    one_line_error(pretrain_main, base + ["data.encoding=klingon"], capsys, "'data.encoding' names no known encoding")
    one_line_error(pretrain_main, base + ["data.csv_delimiter=;;"], capsys, "'data.csv_delimiter' must be")


def test_string_label_names_reach_errors(tmp_path, capsys):
    with pytest.raises(UserError) as err:  # one 'neg' example cannot be split into train and test
        load_texts(DataConfig(source="jsonl", files=[str(_jsonl(tmp_path / "one.jsonl", [_review(i, "pos") for i in range(9)]
                                                               + [_review(9, "neg")]))]), "train")
    assert "class 'neg' has only 1 example" in str(err.value)
    tail = [_review(i, "pos") for i in range(20)] + [_review(20 + i, f"queue {i}") for i in range(7)]
    with pytest.raises(UserError, match=r"^7 classes have only 1 example each \(e.g. 'queue 0', 'queue 1', 'queue 2'\): "
                                        r"too few .*, or leave out or merge those classes"):  # a long tail, counted
        load_texts(DataConfig(source="jsonl", files=[str(_jsonl(tmp_path / "tail.jsonl", tail))]), "train")
    # the same tail beside two classes: trained on, the test split carved from the two, said once (not an error)
    tail.insert(0, _review(40, "neg")), tail.extend(_review(41 + i, "neg") for i in range(9))
    cfg = DataConfig(source="jsonl", files=[str(_jsonl(tmp_path / "tail2.jsonl", tail))])
    capsys.readouterr()
    train, test = load_texts(cfg, "train"), load_texts(cfg, "test")
    assert "note: 7 classes have only 1 example each (e.g. 'queue 0', 'queue 1', 'queue 2'): trained on, but not in the " \
           "test split (a class needs 2 examples to be carved); the test split scores the other 2 classes" in capsys.readouterr().out
    assert len(train) + len(test) == 37 and len(test) == 6  # 20 % of the 30 carvable
    assert sorted({train.class_names[i] for i in test.labels.tolist()}) == ["neg", "pos"]
    assert {f"queue {i}" for i in range(7)} <= {train.class_names[i] for i in train.labels.tolist()}
    assert len(load_texts(cfg, "pretrain")) == 31  # the test texts are not pretrained on
    rows = [_review(i, "pos") for i in range(30)] + [_review(98, "neg"), _review(99, "neg")]
    train = _jsonl(tmp_path / "t.jsonl", rows)
    out = tmp_path / "o"
    base = ["--config", "configs/text/mlm_embedded.yaml", "data.source=jsonl", f"data.files=[{train}]",
            f"output_dir={out}", "pretrain.max_steps=1", "pretrain.batch_size=2", "model.vocab_size=120"]
    pretrain_main(base)
    capsys.readouterr()
    one_line_error(finetune_main, base + ["finetune.label_fractions=null", "finetune.labels_per_class=[3]"], capsys, "class 'neg' has only 2")


def test_many_small_classes_get_a_carve_error_naming_the_key_not_a_traceback(tmp_path, capsys):
    """Three tickets in each of ten queues: a 20 % carve holds 6 texts, which cannot hold ten classes, and sklearn's
    ValueError went up as a traceback. So did the validation carve of a class left with one training example (one
    of its two went to the test split). Both are one-line errors naming what to change."""
    rows = [{"text": f"ticket {i} in queue {q}: printer {q * 7 + i} jams", "label": f"queue{q}"}
            for q in range(10) for i in range(3)]
    data = _jsonl(tmp_path / "tickets.jsonl", rows)
    base = ["--config", "configs/text/mlm_embedded.yaml", "data.source=jsonl", f"data.files=[{data}]",
            f"output_dir={tmp_path / 'o'}", "pretrain.max_steps=1", "pretrain.batch_size=2", "model.vocab_size=120"]
    one_line_error(pretrain_main, base, capsys, "a stratified 0.2 test split of 30 examples in 10 classes needs at least "
           "one example of each class on both sides: set data.test_fraction between 0.34 and 0.66, or give your own "
           "test split (data.test_files / a test/ folder)")
    ok = base + ["data.test_fraction=0.34"]
    pretrain_main(ok)  # the fraction the error names works
    assert len(load_texts(load_config("configs/text/mlm_embedded.yaml", ok[2:]).data, "test")) == 11
    capsys.readouterr()
    two = _jsonl(tmp_path / "two.jsonl", [_review(i, "pos") for i in range(20)] + [_review(98, "neg"), _review(99, "neg")])
    base = base[:3] + [f"data.files=[{two}]", f"output_dir={tmp_path / 'v'}", "data.test_fraction=0.5"] + base[5:]
    pretrain_main(base)
    capsys.readouterr()
    one_line_error(finetune_main, base + ["finetune.evaluate_on=validation"], capsys,
           "class 'neg' has only 1 example: too few to carve a validation split from (need 2 per class); give your own "
           "validation split (data.validation_files / a val/ folder), more examples, or leave out or merge that class "
           "(e.g. into one 'other' class)")


# --------------------------------------------------------------------------------------- run dir policy

def test_rerun_with_other_recipe_is_refused_and_finished_run_does_nothing(tmp_path, capsys):
    out = tmp_path / "run"
    base = ["--config", "configs/vision/simclr_digits.yaml", f"output_dir={out}", "pretrain.max_steps=2",
            "pretrain.batch_size=32", "model.projection_hidden_dim=32"]
    pretrain_main(base)
    saved = (out / "config.json").read_text()
    weights = (out / "encoder" / "model.safetensors").stat().st_mtime_ns
    capsys.readouterr()
    msg = one_line_error(pretrain_main, base + ["model.backbone=resnet18", "pretrain.temperature=0.1"], capsys,
                 "holds a run with a different recipe")
    assert "model.backbone ('ssl_cnn6' there, 'resnet18' now)" in msg and "pretrain.simclr.temperature" in msg
    assert (out / "config.json").read_text() == saved
    pretrain_main(base + ["pretrain.log_every=1"])  # a key that does not change what is trained
    assert "already complete" in capsys.readouterr().out
    assert (out / "encoder" / "model.safetensors").stat().st_mtime_ns == weights
    pretrain_main(base[:-3] + ["pretrain.max_steps=3", "pretrain.batch_size=32", "model.projection_hidden_dim=32"])
    assert json.loads((out / "pretrain_done.json").read_text())["step"] == 3  # raising max_steps continues it
    pretrain_main(base)  # lowered again: nothing to train; the record keeps the steps the encoder has
    assert json.loads((out / "pretrain_done.json").read_text())["step"] == 3


# ------------------------------------------------------------------------------------------ ergonomics

def test_no_typed_on_the_command_line_is_accepted():
    assert load_config(None, ["pretrain.mixed_precision=no"]).pretrain.mixed_precision == "no"
    with pytest.raises(UserError) as err:
        load_config(None, ["pretrain.mixed_precision=yes"])
    assert "must be one of ['no', 'bf16', 'fp16', 'auto']" in str(err.value)


def test_hints_for_the_usual_first_mistakes(tmp_path, capsys):
    with pytest.raises(UserError) as err:
        load_config(None, ["data.source=text"])
    assert "set task=mlm" in str(err.value)
    one_line_error(finetune_main, ["--config", "configs/vision/simclr_digits.yaml", f"output_dir={tmp_path / 'never'}"],
           capsys, "run `pretrain` with this config first, or set finetune.encoder")


def test_help_lists_main_keys_and_sources(capsys):
    with pytest.raises(SystemExit):
        pretrain_main(["--help"])
    out = capsys.readouterr().out
    for needle in ("data.test_files", "finetune.evaluate_on", "threads", "folder:", "jsonl / csv / parquet / excel:"):
        assert needle in out
    assert help_text() in out.replace("\r", "")


def test_thread_count_follows_the_job_unless_the_user_chose(monkeypatch):
    from ssl_pipeline import threads

    env = {"OMP_NUM_THREADS": "1", threads.LAUNCHER_MARKER: "NO"}
    me = os.getpid()  # stands in for the launcher: this test process's own environ and cmdline
    own_env = open(f"/proc/{me}/environ", "rb").read().decode(errors="replace")
    assert threads.user_chose_threads(env, parent_pid=me) == ("OMP_NUM_THREADS=" in own_env)
    assert threads.user_chose_threads({"OMP_NUM_THREADS": "3"}) is True  # plain python: the user's value
    assert threads.user_chose_threads({}) is False
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")
    n, why = threads.configure_threads(None)
    assert n == threads.job_cores() and "cores" in why
    assert threads.configure_threads(1) == (1, "threads")


def test_run_from_another_directory_with_module_form(tmp_path):
    import subprocess
    import sys

    from conftest import cli_env

    proc = subprocess.run([sys.executable, "-m", "pretrain", "--config", "configs/vision/simclr_digits.yaml",
                           f"output_dir={tmp_path / 'o'}", "pretrain.max_steps=2", "pretrain.batch_size=32",
                           "model.projection_hidden_dim=32"], cwd=tmp_path, env=cli_env(), capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "o" / "encoder").is_dir()
    assert "CPU threads per process: 1 (OMP_NUM_THREADS)" in proc.stdout
    assert "\r" not in proc.stderr and "pretrain simclr: 2/2 (100 %)" in proc.stderr  # log lines, not a bar


# -------------------------------------------------------------------------------- embeddings and encode

def test_embed_writes_every_split_to_parquet_and_npy(tmp_path, capsys):
    import pyarrow.parquet as pq

    root = tmp_path / "shapes"
    _images(root / "train", ["circle", "square"], n=4)
    _images(root / "test", ["circle", "square"], n=2)
    out = tmp_path / "run"
    args = ["--config", "configs/vision/simclr_digits.yaml", "data.source=folder", f"data.root={root}",
            f"output_dir={out}", *SMALL]
    pretrain_main(args)
    embed_main(args + [f"out={tmp_path / 'e.parquet'}"])
    table = pq.read_table(tmp_path / "e.parquet").to_pydict()
    assert table["split"].count("train") == 8 and table["split"].count("test") == 4
    assert set(table["label"]) == {"circle", "square"} and all(p.endswith(".png") for p in table["id"])
    enc = __import__("ssl_pipeline").load_encoder(out / "encoder")
    first = Image.open(table["id"][0])
    assert np.allclose(table["embedding"][0], enc.encode(first)[0].numpy(), atol=1e-4)
    embed_main(args + [f"out={tmp_path / 'e.npy'}"])
    assert np.load(tmp_path / "e.npy").shape == (12, enc.embedding_dim)
    assert (tmp_path / "e.index.csv").read_text().splitlines()[0] == "row,id,split,label"
    capsys.readouterr()
    one_line_error(embed_main, args + [f"out={tmp_path / 'e.npy'}"], capsys, "already exists")


def test_embed_two_processes_matches_one(tmp_path):
    out = tmp_path / "run"
    base = ["--config", "configs/vision/simclr_digits.yaml", f"output_dir={out}", "pretrain.max_steps=2",
            "pretrain.batch_size=32", "model.projection_hidden_dim=32", "finetune.probe_batch_size=100"]
    pretrain_main(base)
    embed_main(base + [f"out={tmp_path / 'one.npy'}"])  # in-process: one launch (of two processes) is enough
    run_stage("ssl_pipeline.embed", base + [f"out={tmp_path / 'two.npy'}"], nproc=2)
    one, two = np.load(tmp_path / "one.npy"), np.load(tmp_path / "two.npy")
    assert one.shape == (1797, 256) and np.allclose(one, two, atol=1e-5)


def test_vision_encode_takes_pil_arrays_and_uint8_tensors(tmp_path):
    import ssl_pipeline

    out = tmp_path / "run"
    pretrain_main(["--config", "configs/vision/simclr_digits.yaml", f"output_dir={out}", "pretrain.max_steps=1",
                   "pretrain.batch_size=16", "model.projection_hidden_dim=16"])
    enc = ssl_pipeline.load_encoder(out / "encoder")
    rgb = np.random.default_rng(0).integers(0, 256, (40, 30, 3), dtype=np.uint8)  # another size, RGB
    pil = Image.fromarray(rgb)
    a, b = enc.encode(pil), enc.encode([rgb])
    c = enc.encode(torch.from_numpy(enc.preprocess(pil).numpy()))
    assert a.shape == (1, enc.embedding_dim) and torch.allclose(a, b) and torch.allclose(a, c, atol=1e-5)
    assert enc.preprocess(pil).shape == (1, 1, 16, 16)  # the exported size and channels (digits config: 16 px grey)
    with pytest.raises(UserError):
        enc.encode(torch.rand(1, 1, 8, 8))


def test_report_says_in_words_when_ssl_saves_nothing_and_when_classic_wins(tmp_path):
    from ssl_pipeline.finetune.report import write_report

    rows = []
    for seed in (0, 1):
        for method, accs in {"finetune": (0.70, 0.80), "knn": (0.60, 0.70), "supervised": (0.60, 0.85),
                             "classic": (0.65, 0.90)}.items():
            for frac, acc in zip((0.01, 0.1), accs):
                rows.append({"method": method, "label_fraction": frac, "n_labels": int(frac * 1000), "seed": seed,
                             "accuracy": acc + 0.01 * seed})
    header = {"task": "simclr", "data": "folder /data/shapes", "encoder": "runs/x/encoder",
              "encoder_model": "resnet18 (simclr)", "class_names": ["circle", "square"], "evaluated_on": "test"}
    doc = write_report(tmp_path, header, rows)
    assert doc["findings"] == [
        "no label saving over supervised at 10 %: the best SSL method (finetune, 80.5 %) does not beat the same "
        "model trained from scratch (85.5 %)",
        "classic beats every SSL method at 10 %: 90.5 % vs 80.5 % for finetune"]
    md = (tmp_path / "label_efficiency.md").read_text()
    assert "folder /data/shapes, encoder resnet18 (simclr)" in md and "No label saving over supervised at 10 %" in md
    assert "70.5 ± 0.7" in md  # two seeds: a spread is shown
    png = (tmp_path / "label_efficiency.png").read_bytes()
    one = write_report(tmp_path, header, [r for r in rows if r["seed"] == 0], plot=False)  # between cells
    assert (tmp_path / "label_efficiency.png").read_bytes() == png  # the tables moved on, the plot waits
    md = (tmp_path / "label_efficiency.md").read_text()
    assert "n = 1 seed" in md and "± 0.0" not in md and "| finetune | 70.0 | 80.0 |" in md
    assert one["findings"][0].startswith("no label saving over supervised at 10 %")
    assert "; 2 classes: circle, square." in md
    write_report(tmp_path, {**header, "class_names": ["Cooking, recipes", "Finance"]}, rows, plot=False)
    assert "; 2 classes: Cooking, recipes | Finance." in (tmp_path / "label_efficiency.md").read_text()


def test_a_lead_of_classic_inside_the_noise_is_said_to_be_not_significant(tmp_path):
    """A code-classification run: classic 55.6 % vs finetune 50.2 % at 10 % with a paired interval of −12.6 to +4.7
    was stated as 'classic beats every SSL method'. The lead stays a fact; its uncertainty is said with it."""
    from ssl_pipeline.finetune.report import write_report

    accs = {"finetune": (0.50, 0.60, 0.55), "supervised": (0.40, 0.45, 0.42), "classic": (0.56, 0.52, 0.60)}
    rows = [{"method": m, "label_fraction": 0.1, "n_labels": 85, "seed": s, "accuracy": a}
            for m, seeds in accs.items() for s, a in enumerate(seeds)]
    header = {"task": "mlm", "data": "csv files", "encoder": "runs/x/encoder", "evaluated_on": "test"}
    found = write_report(tmp_path, header, rows)["findings"]
    assert found[0].startswith("classic beats every SSL method at 10 %: 56.0 % vs 55.0 % for finetune (not "
                               "significant: the 95 % interval of classic minus finetune is ")
    lo, hi = (float(v) for v in found[0].split(" is ")[1].split(" points")[0].split(" to "))
    assert lo < 0 < hi
    clear = [{**r, "accuracy": r["accuracy"] + 0.2} if r["method"] == "classic" else r for r in rows]
    assert write_report(tmp_path, header, clear)["findings"][0].endswith("76.0 % vs 55.0 % for finetune")


def test_report_says_why_pretraining_may_save_no_labels_from_the_encoders_record(tmp_path):
    """A text encoder whose held-out MLM loss stayed near the token-frequency loss is named as the likely cause,
    with a public checkpoint as the first thing to try; a trained one is described without that verdict."""
    from ssl_pipeline.finetune.report import write_report
    from ssl_pipeline.pretraining_record import PLATEAU_MARGIN, describe, on_plateau

    rows = [{"method": m, "label_fraction": 0.1, "n_labels": 100, "seed": s, "accuracy": a + 0.01 * s}
            for s in (0, 1) for m, a in (("finetune", 0.50), ("supervised", 0.55))]
    plateau = {"steps": 420, "epochs": 20.0, "examples": 4810, "unit": "packed token blocks", "init_from": None,
               "final": {"eval_loss": 6.01, "eval_token_frequency_loss": 6.23, "knn_accuracy": 0.415},
               "first_knn": {"step": 200, "accuracy": 0.383}}
    header = {"task": "mlm", "modality": "text", "data": "csv files", "encoder": "runs/x/encoder",
              "evaluated_on": "test", "pretraining": plateau}
    doc = write_report(tmp_path, header, rows)
    why = doc["findings"][-1]
    assert why.startswith("why it may save no labels: the encoder was pretrained for 420 steps (20.0 passes over "
                          "4,810 packed token blocks) from random weights; held-out MLM loss 6.01, 0.22 nats below")
    assert "still on that plateau" in why and "kNN accuracy of its embeddings on a labeled train carve 38.3 % at " \
        "step 200 → 41.5 %" in why
    assert why.index("model.init_from") < why.index("pretrain.epochs") and "data.extra_pretrain_files" in why
    md = (tmp_path / "label_efficiency.md").read_text()
    assert "Encoder: pretrained for 420 steps" in md and "**Why it may save no labels" in md
    assert doc["pretraining"] == plateau

    trained = {**plateau, "final": {"eval_loss": 6.23 - PLATEAU_MARGIN - 0.01, "eval_token_frequency_loss": 6.23}}
    assert on_plateau(plateau) and not on_plateau(trained)
    doc = write_report(tmp_path, {**header, "pretraining": trained}, rows)
    assert "plateau" not in doc["findings"][-1] and doc["findings"][-1].index("pretrain.epochs") < \
        doc["findings"][-1].index("model.init_from")
    collapsed = {**plateau, "final": {"embedding_std": 0.001}}
    assert "collapsed (std 0.001)" in describe(collapsed)
    assert "collapsed" not in describe({**collapsed, "steps": 2})  # BatchNorm's first steps look collapsed: no alarm
    gains = [{**r, "accuracy": r["accuracy"] + (0.1 if r["method"] == "finetune" else 0)} for r in rows]
    assert not write_report(tmp_path, header, gains)["findings"]  # a saving: no "why" line, the facts stay in md
    assert "Encoder: pretrained for 420 steps" in (tmp_path / "label_efficiency.md").read_text()
    # a saving over `supervised` but TF-IDF ahead: what the user would otherwise use wins, so the "why" line follows
    classic = [{**r, "method": "classic", "accuracy": 0.7} for r in rows if r["method"] == "supervised"]
    found = write_report(tmp_path, header, gains + classic)["findings"]
    assert found[0].startswith("classic beats every SSL method at 10 %") and found[-1].startswith("why it may save")


def test_an_mlm_that_memorised_a_small_corpus_is_not_told_to_pretrain_longer(tmp_path):
    """2,500 one-liners, 161 blocks: the 1,000-step floor is 500 passes, the held-out loss rose from 7.27 (step 200)
    to 8.36 (step 400) as the training loss fell to 2.0. The record keeps the lowest held-out loss; the report names
    the memorising and advises more text, a checkpoint or fewer steps — not the "longer pretraining" it gave."""
    from ssl_pipeline.finetune.report import write_report
    from ssl_pipeline.pretraining_record import advice, describe, memorising, summarize

    metrics = tmp_path / "metrics.jsonl"
    rows = [{"step": 200, "epoch": 99, "loss": 4.8, "samples_per_sec": 1.0},
            {"step": 200, "epoch": 99, "eval_loss": 7.27, "eval_token_frequency_loss": 6.78},
            {"step": 400, "epoch": 199, "eval_loss": 8.36, "eval_token_frequency_loss": 6.78},
            {"step": 1000, "epoch": 499.5, "loss": 1.31, "samples_per_sec": 1.0},
            {"step": 1000, "epoch": 499.5, "eval_loss": 8.9, "eval_token_frequency_loss": 6.78}]
    metrics.write_text("".join(json.dumps(r) + "\n" for r in rows))
    record = summarize(metrics, 161, "packed token blocks", None)
    assert record["best_eval"] == {"step": 200, "loss": 7.27} and memorising(record)
    said, to_try = describe(record), advice(record, "text")
    assert "held-out MLM loss 8.90, 2.12 nats above the 6.78" in said and "it had been 7.27 at step 200" in said
    assert "training loss fell to 1.31" in said and "memorised" in said
    assert "longer pretraining" not in to_try and "pretrain.max_steps=200" in to_try
    assert to_try.index("model.init_from") < to_try.index("data.extra_pretrain_files")
    header = {"task": "mlm", "modality": "text", "data": "csv files", "evaluated_on": "test", "pretraining": record}
    level = [{"method": m, "label_fraction": 0.1, "n_labels": 100, "seed": s, "accuracy": 0.5 + 0.01 * s}
             for s in (0, 1) for m in ("finetune", "supervised")]
    why = write_report(tmp_path, header, level)["findings"][-1]
    assert why.startswith("why it may save no labels") and "memorised" in why and "longer pretraining" not in why
    # a held-out loss that ends at (or near) its lowest is not memorising, whatever the training loss
    still = {**record, "best_eval": {"step": 1000, "loss": 8.8}}
    assert not memorising(still) and "memorised" not in describe(still)


def test_a_tiny_corpus_that_memorised_on_the_plateau_is_said_to_have_learned_nothing_first(tmp_path):
    """480 UI messages (57 blocks, one step a pass): lowest held-out loss 6.47 at step 90, 0.07 nats under knowing
    token frequencies (6.54), then memorised and stopped at step 150, 10 steps after the last logged training row.
    The encoder it kept never left the plateau, and the passes count the steps trained, not those logged."""
    from ssl_pipeline.pretraining_record import describe, summarize

    rows = [{"step": 90, "epoch": 90.0, "loss": 5.5, "samples_per_sec": 1.0},
            {"step": 90, "eval_loss": 6.47, "eval_token_frequency_loss": 6.54},
            {"step": 140, "epoch": 140.0, "loss": 4.3, "samples_per_sec": 1.0},
            {"step": 150, "eval_loss": 6.82, "eval_token_frequency_loss": 6.54, "stopped_memorising": True}]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    record = summarize(tmp_path / "metrics.jsonl", 57, "packed token blocks", None)
    said = describe({**record, "encoder_from": {"step": 90, "eval_loss": 6.47}})
    assert said.startswith("pretrained for 150 steps (150.0 passes over 57 packed token blocks; stopped early")
    assert said.endswith("the encoder exported is step 90's, where it was lowest, 0.07 nats below the "
                         "token-frequency loss: it began to memorise before it had left that plateau")
    rows[1]["eval_loss"] = 6.0  # kept 0.54 nats under the plateau: it had learned from context before memorising
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    said = describe({**summarize(tmp_path / "metrics.jsonl", 57, "packed token blocks", None),
                     "encoder_from": {"step": 90, "eval_loss": 6.0}})
    assert said.endswith("the encoder exported is step 90's, where it was lowest") and "plateau" not in said


def test_pretraining_that_memorised_ends_with_a_note(tmp_path, monkeypatch, capsys):
    """The note comes when the run ends (the user may be about to pretrain longer), from the record it exports."""
    from ssl_pipeline import pretraining_record as PR

    real = PR.summarize

    def summarize(*args):  # this tiny run's held-out loss as if it had been 1 nat lower at step 2
        record = real(*args)
        record["best_eval"] = {"step": 2, "loss": record["final"]["eval_loss"] - 1.0}
        return record

    monkeypatch.setattr(PR, "summarize", summarize)
    out = tmp_path / "t"
    pretrain_main(["--config", "configs/text/mlm_embedded.yaml", f"output_dir={out}", "pretrain.max_steps=4",
                   "pretrain.eval_every=2", "model.vocab_size=1000", *SMALL_TEXT_MODEL])
    said = capsys.readouterr().out
    assert "note: the held-out MLM loss rose from" in said and "at step 2 to" in said
    assert "pretrain.max_steps=2" in said and "longer pretraining" not in said
    record = json.loads((out / "encoder" / "ssl_encoder.json").read_text())["pretraining"]
    assert record["best_eval"]["step"] == 2 and PR.memorising(record)


def test_a_memorising_pretraining_stops_keeps_its_best_encoder_and_says_so(tmp_path, monkeypatch, capsys):
    """The held-out loss as a small corpus's goes (lowest at step 4, then three evaluations 0.2+ above it): the run
    stops at step 10 of 16, exports step 4's encoder, records both, and is complete for that patience only."""
    from ssl_pipeline import pretraining_record as PR
    from ssl_pipeline.tasks.mlm import MLMTask

    losses = iter([6.0, 5.0, 5.5, 5.6, 5.7, 5.8, 5.9, 6.0])
    real = MLMTask.evaluate

    def evaluate(self, model, accelerator):
        return {**real(self, model, accelerator), "eval_loss": next(losses)}

    monkeypatch.setattr(MLMTask, "evaluate", evaluate)
    out = tmp_path / "t"
    args = ["--config", "configs/text/mlm_embedded.yaml", f"output_dir={out}", "pretrain.max_steps=16",
            "pretrain.eval_every=2", "model.vocab_size=1000", *SMALL_TEXT_MODEL]
    pretrain_main(args)
    said = "".join(capsys.readouterr())  # the stop's line comes with the progress (stderr), the note on stdout
    assert "stopped at step 10 of 16" in said and "exported the encoder of step 4, of the lowest held-out loss" in said
    assert "pretrain.max_steps=4, pretrain.min_steps=0" in said  # a schedule ending there beats the kept encoder
    record = json.loads((out / "encoder" / "ssl_encoder.json").read_text())["pretraining"]
    assert record["steps"] == 10 and record["stopped_memorising"] == 10 and PR.memorising(record)
    assert record["encoder_from"] == {"step": 4, "eval_loss": 5.0} and not (out / "best_encoder").exists()
    said = PR.describe(record)
    assert "pretrained for 10 steps (" in said and "blocks; stopped early: memorising) from random weights" in said
    assert "the encoder exported is step 4's, where it was lowest" in said
    from transformers import AutoModel

    AutoModel.from_pretrained(out / "encoder")  # what was copied into place loads as any export does
    pretrain_main(args)
    assert "already complete" in capsys.readouterr().out
    from ssl_pipeline.config import load_config
    from ssl_pipeline.run_dir import check_pretrain_dir

    on = load_config("configs/text/mlm_embedded.yaml", args[2:] + ["pretrain.early_stopping_patience=0"])
    assert check_pretrain_dir(out, on) == "resume"  # patience 0 trains it on


def test_ssl_level_with_scratch_at_every_label_is_no_verdict_against_pretraining(tmp_path):
    """Digits, defaults: +28 points at 1 % (a 4× multiplier), 99.1 vs 99.4 % at 100 %. The report said "no label
    saving over supervised at 100 %" and diagnosed the pretraining ("why it may save no labels: ... longer
    pretraining") under that table. With every label there are none to save: the fact stays, the verdict goes."""
    from ssl_pipeline.finetune.report import write_report

    rows = [{"method": m, "label_fraction": f, "n_labels": int(f * 1437), "seed": s, "accuracy": a + 0.01 * s}
            for s in (0, 1) for m, accs in (("finetune", (0.70, 0.991)), ("supervised", (0.41, 0.994)),
                                            ("classic", (0.59, 0.995)))
            for f, a in zip((0.01, 1.0), accs)]
    record = {"steps": 1000, "epochs": 200.0, "examples": 1437, "unit": "images", "init_from": None,
              "final": {"knn_accuracy": 0.977}, "first_knn": {"step": 200, "accuracy": 0.951}}
    header = {"task": "simclr", "modality": "vision", "data": "folder digits", "encoder": "runs/x/encoder",
              "evaluated_on": "test", "pretraining": record}
    found = write_report(tmp_path, header, rows)["findings"]
    assert found == [
        "with all the labels (100 %) pretraining adds nothing over the same model trained from scratch: finetune "
        "99.6 % vs 99.9 % for supervised, as is usual once labels are plentiful; the label saving, if any, is at the "
        "smaller fractions",
        "classic beats every SSL method at 100 %: 100.0 % vs 99.6 % for finetune"]
    worse = [{**r, "accuracy": 0.3} if (r["method"], r["label_fraction"]) == ("finetune", 0.01) else r for r in rows]
    assert write_report(tmp_path, header, worse)["findings"][-1].startswith("why it may save no labels")


def test_a_fraction_where_scratch_has_already_reached_its_all_label_accuracy_gets_no_pretraining_diagnosis(tmp_path):
    """Letters A–J of 1,000 fonts: +6.4 points at 1 %, then 98.8 % for SSL vs 99.1 % from scratch at 10 % — and
    99.0 % from scratch with every label. The report said "no label saving at 10 %" and told the user to pretrain
    longer; at a budget where the baseline has nothing left to gain, no method can save labels: said as such."""
    from ssl_pipeline.finetune.report import write_report

    accs = {"linear_probe": (0.926, 0.988, 0.991), "supervised": (0.863, 0.991, 0.990), "classic": (0.866, 0.977, 0.990)}
    rows = [{"method": m, "label_fraction": f, "n_labels": int(f * 7947), "seed": s, "accuracy": a}
            for s in (0, 1) for m, a3 in accs.items() for f, a in zip((0.01, 0.1, 1.0), a3)]
    record = {"steps": 1700, "epochs": 50.0, "examples": 8710, "unit": "images", "init_from": None,
              "final": {"knn_accuracy": 0.953}, "first_knn": {"step": 200, "accuracy": 0.883}}
    header = {"task": "simclr", "modality": "vision", "data": "folder letters", "encoder": "runs/x/encoder",
              "evaluated_on": "validation", "pretraining": record}
    found = write_report(tmp_path, header, rows)["findings"]
    assert found[0] == ("no label saving over supervised at 10 %, and none to be had there: the same model from "
                        "scratch already scores 99.1 % with these 794 labels against 99.0 % with 7,947 (the best SSL "
                        "method, linear_probe, 98.8 %); the label saving, if any, is at the smaller fractions")
    assert not any(f.startswith("why it may save no labels") for f in found)
    # one point below its all-label accuracy, scratch still had something to gain: the diagnosis stays
    short = [{**r, "accuracy": 0.980} if (r["method"], r["label_fraction"]) == ("supervised", 0.1) else
             {**r, "accuracy": 0.975} if (r["method"], r["label_fraction"]) == ("linear_probe", 0.1) else r for r in rows]
    found = write_report(tmp_path, header, short)["findings"]
    assert found[0].startswith("no label saving over supervised at 10 %: the best SSL method (linear_probe, 97.5 %)")
    assert found[-1].startswith("why it may save no labels")
    # classic ahead where it has already reached its all-label accuracy: said, and no diagnosis either
    saturated_classic = [{**r, "accuracy": 0.992} if (r["method"], r["label_fraction"]) == ("classic", 0.1) else
                         {**r, "accuracy": 0.980} if (r["method"], r["label_fraction"]) == ("supervised", 0.1) else r
                         for r in rows]
    found = write_report(tmp_path, header, saturated_classic)["findings"]
    assert found == ["classic beats every SSL method at 10 %: 99.2 % vs 98.8 % for linear_probe"]


def test_loading_a_text_encoder_prints_nothing(tmp_path):
    import subprocess
    import sys

    from conftest import cli_env

    out = tmp_path / "t"
    pretrain_main(["--config", "configs/text/mlm_embedded.yaml", f"output_dir={out}", "pretrain.max_steps=1",
                   "model.vocab_size=300"])
    env = {k: v for k, v in cli_env().items() if k != "TRANSFORMERS_VERBOSITY"}
    code = f"import ssl_pipeline; e = ssl_pipeline.load_encoder({str(out / 'encoder')!r}); print(tuple(e.encode(['a b']).shape))"
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "(1, 128)", proc.stderr
    assert "LOAD REPORT" not in proc.stderr and "Loading weights" not in proc.stderr and "UNEXPECTED" not in proc.stderr


def test_hf_image_files_with_string_labels(tmp_path):
    import datasets

    imgs = [Image.new("RGB", (12, 12), (i * 30 % 255, 0, 0)) for i in range(20)]
    names = ["cat" if i % 2 else "dog" for i in range(20)]
    ds = datasets.Dataset.from_dict({"image": imgs, "label": names}).cast_column("image", datasets.Image())
    ds.to_parquet(str(tmp_path / "pets.parquet"))
    d = DataConfig(source="hf", files=[str(tmp_path / "pets.parquet")], image_size=8)
    train, test = load_images(d, "train"), load_images(d, "test")
    assert train.class_names == ["cat", "dog"] and len(train) == 16 and len(test) == 4
    assert sorted(test.labels.tolist()) == [0, 0, 1, 1]
    assert len(load_images(d, "pretrain")) == 16



def test_hub_image_and_label_columns_under_other_names_are_found(tmp_path, capsys):
    """Hub datasets name their columns as they like (CIFAR-10: `img`; beans, cats_vs_dogs: `labels`): a dataset with
    one `Image` / one `ClassLabel` column is read from it (said once), streamed too, texts too. Two columns of the
    type (an image and its mask; CIFAR-100's fine and coarse labels) are not guessed: the error names the columns."""
    import datasets

    from ssl_pipeline.data.hub_images import first_images
    from ssl_pipeline.errors import UnlabeledData, UserError

    imgs = [Image.new("RGB", (12, 12), (i * 30 % 255, 0, 0)) for i in range(20)]
    pets = datasets.ClassLabel(names=["cat", "dog"])
    feats = datasets.Features({"img": datasets.Image(), "labels": pets})
    datasets.Dataset.from_dict({"img": imgs, "labels": [i % 2 for i in range(20)]}, features=feats).to_parquet(
        str(tmp_path / "c.parquet"))
    d = DataConfig(source="hf", files=[str(tmp_path / "c.parquet")], image_size=8)
    train, test = load_images(d, "train"), load_images(d, "test")
    assert len(train) == 16 and len(test) == 4 and train.class_names == ["cat", "dog"]
    assert tuple(train.dataset[0]["images"].shape) == (3, 8, 8)
    said = capsys.readouterr().out
    assert said.count("reading images from its one Image column, 'img'") == 1
    assert said.count("data.label_column 'label' is not a column of") == 1 and "its one ClassLabel column, 'labels'" in said
    images, labels = first_images(dataclasses.replace(d, streaming=True), 4)
    assert images["images"].shape == (4, 3, 8, 8) and labels.tolist() == [0, 1, 0, 1]
    capsys.readouterr()
    texts = datasets.Features({"text": datasets.Value("string"), "photo": datasets.Image(), "labels": pets})
    datasets.Dataset.from_dict({"text": [f"a {'dog' if i % 2 else 'cat'} story {i}" for i in range(20)], "photo": imgs,
                                "labels": [i % 2 for i in range(20)]}, features=texts).to_parquet(str(tmp_path / "t.parquet"))
    t = load_texts(DataConfig(source="hf", files=[str(tmp_path / "t.parquet")]), "train")
    assert t.class_names == ["cat", "dog"] and len(t.texts) == 16
    said = capsys.readouterr().out  # a text method takes the label column, and says nothing of the images
    assert "one ClassLabel column, 'labels'" in said and "Image column" not in said
    two = datasets.Features({"img": datasets.Image(), "mask": datasets.Image(), "label": datasets.Value("int64")})
    datasets.Dataset.from_dict({"img": imgs, "mask": imgs, "label": [i % 2 for i in range(20)]},
                               features=two).to_parquet(str(tmp_path / "two.parquet"))
    with pytest.raises(UserError, match=r"data.image_column 'image' is not a column of .*\['img', 'mask', 'label'\]"):
        load_images(DataConfig(source="hf", files=[str(tmp_path / "two.parquet")], image_size=8), "train")
    fine_coarse = datasets.Features({"img": datasets.Image(), "fine_label": pets, "coarse_label": pets})
    datasets.Dataset.from_dict({"img": imgs, "fine_label": [i % 2 for i in range(20)],
                                "coarse_label": [0] * 20}, features=fine_coarse).to_parquet(str(tmp_path / "f.parquet"))
    with pytest.raises(UnlabeledData, match="its columns: img, fine_label, coarse_label"):
        load_images(DataConfig(source="hf", files=[str(tmp_path / "f.parquet")], image_size=8), "train")


def test_unlabeled_hf_images_pretrain_whole_and_have_no_test_split(tmp_path, capsys):
    """Without a label column the train split is all there is: it is not handed out as a "test" split (the leakage
    guard then matched every pretraining image with itself)."""
    import datasets

    from ssl_pipeline.errors import UnlabeledData

    imgs = [Image.new("RGB", (12, 12), (i * 30 % 255, i * 7 % 255, 0)) for i in range(20)]
    datasets.Dataset.from_dict({"image": imgs}).cast_column("image", datasets.Image()).to_parquet(str(tmp_path / "u.parquet"))
    d = DataConfig(source="hf", files=[str(tmp_path / "u.parquet")], image_size=8)
    assert len(load_images(d, "pretrain")) == 20
    for split in ("train", "test"):
        with pytest.raises(UnlabeledData, match="has no labels to fine-tune on"):
            load_images(d, split)
    pretrain_main(["--config", "configs/vision/simclr_digits.yaml", "data.source=hf", f"data.files=[{tmp_path / 'u.parquet'}]",
                   "data.image_size=16", "pretrain.max_steps=1", "pretrain.batch_size=8", "data.dedupe=true",
                   f"output_dir={tmp_path / 'o'}"])
    out = capsys.readouterr().out
    assert "duplicates between pretraining and test data: not checked (no test split)" in out
    assert "pretraining simclr on 20 images" in out


def test_ctrl_c_in_the_finetune_grid_keeps_finished_cells(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    from conftest import as_foreground_job, cli_env

    out = tmp_path / "run"
    base = ["--config", "configs/vision/simclr_digits.yaml", f"output_dir={out}", "pretrain.max_steps=2",
            "pretrain.batch_size=32", "model.projection_hidden_dim=32"]
    pretrain_main(base)
    ft = base + ["finetune.seeds=[0,1,2]", "finetune.methods=[knn,supervised]", "finetune.min_steps=30",
                 "finetune.max_steps=30"]
    proc = subprocess.Popen([sys.executable, "-m", "finetune"] + ft, cwd=ROOT, env=cli_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=as_foreground_job)
    results = out / "label_efficiency.json"
    deadline = time.time() + 300
    while not results.exists():
        assert proc.poll() is None and time.time() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "Traceback" not in err, err[-2000:]
    assert err.strip().splitlines()[-1].startswith("interrupted — finished work is kept")
    assert 1 <= len(json.loads(results.read_text())["rows"]) < 18


def test_label_multiplier_says_when_there_is_no_saving():
    from ssl_pipeline.finetune.report import label_multiplier, summarize

    rows = [{"method": m, "label_fraction": f, "n_labels": n, "seed": 0, "accuracy": a}
            for m, pts in {"linear_probe": ((0.1, 60, 0.63), (1.0, 600, 0.79)),
                           "classic": ((0.1, 60, 0.64), (1.0, 600, 0.80))}.items() for f, n, a in pts]
    lm = label_multiplier(summarize(rows), baseline="best")
    assert lm["multiplier"] == 1.0 and lm["text"] == "≤ 1.0× (no label saving)"
