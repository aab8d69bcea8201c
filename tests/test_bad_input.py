"""Bad input matrix: each case is a one-line error naming the problem, exit code 2, no traceback, and
nothing written or overwritten. Most run the CLI mains in-process (fast); a few go through a real process."""
import json
import re

import pytest
from PIL import Image

from conftest import one_line_error, run_stage
from ssl_pipeline.cli import finetune_main, pretrain_main

VISION = ["--config", "configs/vision/simclr_digits.yaml", "pretrain.max_steps=2", "pretrain.batch_size=16",
          "model.projection_hidden_dim=32"]
TEXT = ["--config", "configs/text/mlm_embedded.yaml", "pretrain.max_steps=2", "pretrain.batch_size=8",
        "model.vocab_size=500"]


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "imgs"
    for c in ("cat", "dog"):
        (root / c).mkdir(parents=True)
        for i in range(6):
            Image.new("RGB", (20, 20), (i * 40, 10, 200 if c == "cat" else 0)).save(root / c / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def vision_encoder(tmp_path_factory):
    out = tmp_path_factory.mktemp("enc") / "run"
    pretrain_main(VISION + [f"output_dir={out}"])
    return out / "encoder"


def test_wrong_type(tmp_path, capsys):
    one_line_error(pretrain_main, VISION + [f"output_dir={tmp_path / 'o'}", "pretrain.batch_size=big"], capsys,
           "config key 'pretrain.batch_size' must be an integer")
    assert not (tmp_path / "o").exists()


def test_missing_data_path(tmp_path, capsys):
    one_line_error(pretrain_main, VISION + [f"output_dir={tmp_path / 'o'}", "data.source=folder", f"data.root={tmp_path / 'nope'}"],
           capsys, "data.root does not exist")
    one_line_error(pretrain_main, TEXT + [f"output_dir={tmp_path / 'o'}", "data.source=text", f"data.files=[{tmp_path / 'x.txt'}]"],
           capsys, "does not exist or matches no file")
    assert not (tmp_path / "o").exists()


def test_empty_dataset(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    one_line_error(pretrain_main, VISION + [f"output_dir={tmp_path / 'o'}", "data.source=folder", f"data.root={tmp_path / 'empty'}"],
           capsys, "no images found")
    blank = tmp_path / "blank.txt"
    blank.write_text("\n   \n\n")
    one_line_error(pretrain_main, TEXT + [f"output_dir={tmp_path / 'o'}", "data.source=text", f"data.files=[{blank}]"],
           capsys, "holds no non-empty text")
    assert not (tmp_path / "o").exists()


def test_corrupt_image_refused_or_skipped(folder, tmp_path, capsys):
    (folder / "dog" / "broken.png").write_bytes(b"not an image at all")
    args = VISION + [f"output_dir={tmp_path / 'o'}", "data.source=folder", f"data.root={folder}", "data.image_size=16",
                     "pretrain.batch_size=4"]
    one_line_error(pretrain_main, args, capsys, f"not a readable image: {folder / 'dog' / 'broken.png'}")
    assert not (tmp_path / "o").exists()
    pretrain_main(args + ["data.skip_corrupt=true", "data.channels=3"])
    # which images it was one of: the pretraining pool's or a carved split's (a count alone read as the wrong total)
    assert re.search(r"skipped 1 unreadable image\(s\) of the \d+ (pretraining|test) images", capsys.readouterr().out)
    assert (tmp_path / "o" / "encoder").is_dir()


def test_corrupt_image_in_the_test_carve_stops_pretraining(folder, tmp_path, capsys):
    """A corrupt file carved into the test split is refused before pretraining: removing it afterwards would move the
    carve and put pretraining images into the test split."""
    from ssl_pipeline.config import DataConfig
    from ssl_pipeline.data import images

    carved = images.load_images(DataConfig(source="folder", root=str(folder), image_size=16, channels=3), "test")
    victim = carved.ids[0]
    with open(victim, "wb") as f:
        f.write(b"not an image at all")
    images._READABLE.clear()  # the process remembers files it found readable; this one changed under it
    args = VISION + [f"output_dir={tmp_path / 'o'}", "data.source=folder", f"data.root={folder}", "data.image_size=16",
                     "pretrain.batch_size=4", "data.channels=3"]
    one_line_error(pretrain_main, args, capsys, f"not a readable image: {victim}")
    assert not (tmp_path / "o").exists()


def test_unreadable_test_folder_is_named_by_pretraining(folder, tmp_path, capsys):
    """With its own test/ folder the pretraining pool does not depend on it: pretraining goes on, and its leakage
    line names why the test split was not checked instead of claiming there is none."""
    root = tmp_path / "split"
    root.mkdir()
    folder.rename(root / "train")
    for c in ("cat", "dog"):
        (root / "test" / c).mkdir(parents=True)
        Image.new("RGB", (20, 20), (5, 10, 200)).save(root / "test" / c / "ok.png")
    (root / "test" / "dog" / "broken.png").write_bytes(b"not an image at all")
    pretrain_main(VISION + [f"output_dir={tmp_path / 'o'}", "data.source=folder", f"data.root={root}", "data.image_size=16",
                            "pretrain.batch_size=4", "data.channels=3"])
    line = [x for x in capsys.readouterr().out.splitlines() if x.startswith("duplicates between")]
    assert line == [f"duplicates between pretraining and test data: not checked (the test split cannot be read: not a "
                    f"readable image: {root / 'test' / 'dog' / 'broken.png'} (cannot identify image file); remove it "
                    "or set data.skip_corrupt=true)"]


def test_missing_text_or_label_column(tmp_path, capsys):
    corpus = tmp_path / "c.jsonl"
    corpus.write_text("".join(json.dumps({"subject": f"note {i}", "body": f"text {i}", "topic": i % 2}) + "\n"
                              for i in range(50)))  # two string columns: which is the text is not guessed
    one_line_error(pretrain_main, TEXT + [f"output_dir={tmp_path / 'o'}", "data.source=jsonl", f"data.files=[{corpus}]"],
           capsys, "data.text_column 'text' is not a column")
    assert not (tmp_path / "o").exists()


def test_missing_label_column_in_finetune(tmp_path, capsys):
    corpus = tmp_path / "c.jsonl"
    corpus.write_text("".join(json.dumps({"text": f"the text number {i} is here"}) + "\n" for i in range(200)))
    out = tmp_path / "o"
    pretrain_main(TEXT + [f"output_dir={out}", "data.source=jsonl", f"data.files=[{corpus}]", "model.vocab_size=100"])
    capsys.readouterr()
    one_line_error(finetune_main, TEXT + [f"output_dir={out}", "data.source=jsonl", f"data.files=[{corpus}]"], capsys,
           "data.label_column 'label' is not in the corpus")
    assert not (out / "label_efficiency.json").exists()


def test_encoder_missing_or_other_modality(vision_encoder, tmp_path, capsys):
    one_line_error(finetune_main, TEXT + [f"output_dir={tmp_path / 'o'}", f"finetune.encoder={tmp_path / 'none'}"], capsys,
           f"finetune.encoder {tmp_path / 'none'} does not exist. For a public or local checkpoint")
    checkpoint = tmp_path / "bert"  # a save_pretrained folder: pointed at model.init_from / finetune.base_encoder
    checkpoint.mkdir()
    (checkpoint / "config.json").write_text("{}")
    one_line_error(finetune_main, TEXT + [f"output_dir={tmp_path / 'o'}", f"finetune.encoder={checkpoint}"], capsys,
           f"finetune.encoder {checkpoint} is not an encoder exported by pretrain (no ssl_encoder.json). For a public "
           f"or local checkpoint (a hub id, a save_pretrained folder, a timm name or file): pretrain from it, "
           f"model.init_from={checkpoint}, and fine-tuning scores it too (rows base_probe, base_finetune); or give it "
           f"as finetune.base_encoder={checkpoint} beside the encoder pretrained here")
    one_line_error(finetune_main, TEXT + [f"output_dir={tmp_path / 'o'}", f"finetune.encoder={vision_encoder}"], capsys,
           "is a vision encoder but task=mlm needs a text encoder")
    assert not (tmp_path / "o").exists()


def test_label_fraction_leaving_class_empty(vision_encoder, tmp_path, capsys):
    one_line_error(finetune_main, VISION + [f"output_dir={tmp_path / 'o'}", f"finetune.encoder={vision_encoder}",
                                    "finetune.label_fractions=[0.001]"], capsys, "with no labels")
    assert not (tmp_path / "o").exists()
    # beside a usable fraction (the default 1 % on a small dataset), it is skipped, said and recorded
    finetune_main(VISION + [f"output_dir={tmp_path / 'o'}", f"finetune.encoder={vision_encoder}",
                            "finetune.label_fractions=[0.001,1.0]", "finetune.methods=[knn]", "finetune.seeds=[0]"])
    assert "skipped: label fraction 0.001 leaves class" in capsys.readouterr().out
    doc = json.loads((tmp_path / "o" / "label_efficiency.json").read_text())
    assert {r["label_fraction"] for r in doc["rows"]} == {1.0} and "label fraction 0.001" in doc["skipped_label_fractions"][0]
    assert "Skipped: label fraction 0.001 leaves class" in (tmp_path / "o" / "label_efficiency.md").read_text()


def test_batch_larger_than_dataset_is_fitted_to_it(tmp_path, capsys):
    """A setting chosen for a large dataset (the shipped folder config's 256) runs on a small folder."""
    for c_i, c in enumerate(["a", "b"]):
        (tmp_path / "small" / c).mkdir(parents=True)
        for i in range(10):
            Image.new("RGB", (12, 12), (100 * c_i, 20 * i, 50)).save(tmp_path / "small" / c / f"{i}.png")
    args = ["--config", "configs/vision/simclr_folder.yaml", f"data.root={tmp_path / 'small'}", "data.image_size=16",
            "data.num_workers=0", f"output_dir={tmp_path / 'o'}", "pretrain.max_steps=2", "pretrain.log_every=1",
            "pretrain.mixed_precision=no"]  # in-process: Accelerate's state is process-wide, other tests run fp32
    pretrain_main(args)
    assert "pretrain.batch_size=256 is more than the 16 images hold: batches of 16 per process" in capsys.readouterr().out
    rows = [json.loads(line) for line in (tmp_path / "o" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "loss" in r][-1] == 2
    (tmp_path / "tiny" / "a").mkdir(parents=True)
    Image.new("RGB", (12, 12)).save(tmp_path / "tiny" / "a" / "only.png")
    one_line_error(pretrain_main, args[:3] + [f"data.root={tmp_path / 'tiny'}", f"output_dir={tmp_path / 't'}", args[-1]], capsys,
           "only 1 images to pretrain on: at least 2 per process are needed")
    assert not (tmp_path / "t").exists()


def test_a_rare_class_gets_one_label_and_the_report_says_so(vision_encoder, tmp_path, capsys):
    import numpy as np

    root, rng = tmp_path / "imgs", np.random.default_rng(0)
    for c, n in (("common", 60), ("usual", 60), ("rare", 3)):
        (root / c).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 255, (10, 10), dtype=np.uint8)).save(root / c / f"{i}.png")
    finetune_main(VISION + [f"output_dir={tmp_path / 'o'}", f"finetune.encoder={vision_encoder}", "data.source=folder",
                            f"data.root={root}", "finetune.label_fractions=[0.1]", "finetune.methods=[knn]",
                            "finetune.seeds=[0]"])
    assert "note: label fraction 0.1 rounds to no label for class 'rare' (2 training examples): each gets one" \
        in capsys.readouterr().out
    doc = json.loads((tmp_path / "o" / "label_efficiency.json").read_text())
    assert [r["n_labels"] for r in doc["rows"]] == [11] and not doc["skipped_label_fractions"]  # 5 + 5 + 1
    assert "Note: label fraction 0.1 rounds to no label" in (tmp_path / "o" / "label_efficiency.md").read_text()
    assert any("classes are imbalanced" in f for f in doc["findings"])
    # the metric the finding points at: the same command rescores the rows, nothing retrains
    finetune_main(VISION + [f"output_dir={tmp_path / 'o'}", f"finetune.encoder={vision_encoder}", "data.source=folder",
                            f"data.root={root}", "finetune.label_fractions=[0.1]", "finetune.methods=[knn]",
                            "finetune.seeds=[0]", "finetune.metric=balanced_accuracy"])
    assert "1 grid cells (1 already done)" in capsys.readouterr().out
    rescored = json.loads((tmp_path / "o" / "label_efficiency.json").read_text())
    assert rescored["metric"] == "balanced_accuracy" and rescored["rows"] == doc["rows"]


def test_image_too_small_for_backbone(tmp_path, capsys):
    one_line_error(pretrain_main, VISION + [f"output_dir={tmp_path / 'o'}", "model.backbone=vit_tiny_patch16_224",
                                    "data.image_size=16"], capsys, "data.image_size=16 is too small for model.backbone")
    one_line_error(pretrain_main, VISION + [f"output_dir={tmp_path / 'o'}", "model.backbone=resnet_nope"], capsys,
           "is not a timm model")
    assert not (tmp_path / "o").exists()


def test_finished_results_are_not_overwritten_by_a_bad_run(vision_encoder, tmp_path, capsys):
    out = tmp_path / "o"
    out.mkdir()
    (out / "label_efficiency.json").write_text(json.dumps({"fingerprint": "other", "rows": []}))
    one_line_error(finetune_main, VISION + [f"output_dir={out}", f"finetune.encoder={vision_encoder}",
                                    "finetune.label_fractions=[1.0]", "finetune.seeds=[0]", "finetune.methods=[knn]"],
           capsys, "holds results for a different encoder")
    assert json.loads((out / "label_efficiency.json").read_text())["fingerprint"] == "other"


def test_real_process_has_no_traceback(tmp_path):
    proc = run_stage("finetune", TEXT + [f"output_dir={tmp_path / 'o'}", f"finetune.encoder={tmp_path}"], check=False)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("error: ")


def test_an_archive_as_data_root_says_to_extract_it(tmp_path, capsys):
    """Datasets arrive as photos.zip / docs.tar.gz; pointed at one, the image folder said 'does not exist or is not
    a directory' (it exists) and a text config 'cannot tell the format'."""
    for name, tool in (("photos.zip", "unzip"), ("docs.tar.gz", "tar xf")):  # the command for that kind
        archive = tmp_path / name
        archive.write_bytes(b"PK\x03\x04")
        for config in ("configs/vision/simclr_folder.yaml", "configs/text/mlm_files.yaml"):
            one_line_error(pretrain_main, ["--config", config, f"data.root={archive}", f"output_dir={tmp_path / 'run'}",
                                   "pretrain.mixed_precision=no"],  # in-process: the suite's accelerator state
                   capsys, f"data.root {archive} is an archive, not a folder: extract it (`{tool} {name}`)")
    assert not (tmp_path / "run").exists()


def test_an_output_dir_that_cannot_be_written_is_named_before_any_data_is_read(tmp_path, capsys, monkeypatch):
    """`output_dir=runs/x` where `runs` is a file was a NotADirectoryError traceback from the first mkdir."""
    (tmp_path / "runs").write_text("a file, not a folder")
    bad = f"output_dir={tmp_path / 'runs' / 'x'}"
    for main in (pretrain_main, finetune_main):
        one_line_error(main, VISION + [bad], capsys,
                       f"output_dir {tmp_path / 'runs' / 'x'} cannot be made: {tmp_path / 'runs'} is a file, not a folder")
    import os

    real = os.access  # as for a folder of another user's (root may write anywhere, so this is simulated)
    monkeypatch.setattr(os, "access", lambda p, mode: False if str(p) == str(tmp_path) else real(p, mode))
    one_line_error(pretrain_main, VISION + [f"output_dir={tmp_path / 'new'}"], capsys,
                   f"output_dir {tmp_path / 'new'} cannot be written: {tmp_path} is not writable by this user; set "
                   "output_dir to a folder you can write")
    assert not (tmp_path / "new").exists()


def test_a_folder_named_in_data_files_is_read_by_the_format_of_its_tables_or_named(tmp_path, capsys):
    """data.files=[exports/] was "cannot tell the format of exports from its suffix"."""
    from ssl_pipeline.config import load_config

    tables = tmp_path / "exports"
    tables.mkdir()
    for name in ("a.csv", "b.csv"):
        (tables / name).write_text("text,label\n" + "".join(f"row {i} of {name},{i % 2}\n" for i in range(10)))
    assert load_config("configs/text/mlm_files.yaml", [f"data.files=[{tables}]"]).data.source == "csv"
    (tables / "notes.md").write_text("# how these were made")
    (tables / "run").mkdir()
    (tables / "run" / "metrics.jsonl").write_text("{}\n")
    one_line_error(pretrain_main, ["--config", "configs/text/mlm_files.yaml", f"data.files=[{tables}]",
                                   f"output_dir={tmp_path / 'o'}"], capsys,
                   f"data.files names a folder, {tables}, holding 4 files of several kinds (csv, jsonl, .md): set "
                   f"data.files=[{tables}/*.csv] to read its csv tables, or data.root={tables} (and no data.files) to "
                   "read it as a folder of documents, one text per file")
