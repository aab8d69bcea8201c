"""Config schema: overrides, typing, one-line errors naming the key (exit code 2, no traceback)."""
import pytest

from conftest import run_stage
from ssl_pipeline.config import describe_schema, load_config
from ssl_pipeline.errors import UserError


def test_yaml_and_overrides(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("task: simclr\npretrain:\n  epochs: 3\n")
    cfg = load_config(f, ["pretrain.epochs=7", "pretrain.learning_rate=1e-3", "finetune.label_fractions=[0.1,1.0]",
                          "data.root=/x"])
    assert cfg.pretrain.epochs == 7
    assert cfg.pretrain.learning_rate == pytest.approx(1e-3)
    assert cfg.finetune.label_fractions == [0.1, 1.0]
    assert cfg.data.root == "/x"


def test_encoder_lr_scale_is_one_value_or_one_per_label_budget():
    from ssl_pipeline.finetune.runner import _requests

    one = load_config(None, ["finetune.label_fractions=[0.01,0.1,1.0]", "finetune.encoder_lr_scale=0.3"])
    assert one.finetune.encoder_lr_scale == [0.3]
    assert [r[2] for r in _requests(one)] == [0.3, 0.3, 0.3]
    each = load_config(None, ["finetune.labels_per_class=[1,5]", "finetune.encoder_lr_scale=[0.3,1.0]"])
    assert _requests(each) == [("labels_per_class", 1, 0.3), ("labels_per_class", 5, 1.0)]


@pytest.mark.parametrize("override, needle", [
    ("pretrain.epoch=3", "unknown config key 'pretrain.epoch' (did you mean 'pretrain.epochs'?)"),
    ("pretrain.lr=0.1", "unknown config key 'pretrain.lr' (did you mean 'pretrain.learning_rate'?)"),  # other trainers' name
    ("epochs=3", "unknown config key 'epochs' (did you mean 'pretrain.epochs' or 'finetune.epochs' or"),  # no section
    ("pretrain.epochs=many", "config key 'pretrain.epochs' must be an integer"),
    ("task=barlow", "config key 'task' must be one of"),
    ("data.channels=2", "config key 'data.channels' must be 1 or 3"),
    ("finetune.label_fractions=[0.0]", "fractions must be in (0, 1]"),
    ("finetune.methods=[linear_prob]", "did you mean 'linear_probe'"),
    ("pretrain.batch_size=0", "'pretrain.batch_size' must be positive"),
    ("pretrain.min_steps=-1", "'pretrain.min_steps' must be >= 0"),
    ("nonsense", "must look like key=value"),
    ("finetune.encoder_lr_scale=[0.3,1.0]", "'finetune.encoder_lr_scale' has 2 values: give one, or one per label budget (3)"),
    ("pretrain.simclr.temperature=0", "config key 'pretrain.simclr.temperature' must be positive"),
    ("pretrain.dcl.weight_sigma=-0.5", "config key 'pretrain.dcl.weight_sigma' must be >= 0 (0 = no weighting)"),
    ("pretrain.nnclr.support_size=-1", "config key 'pretrain.nnclr.support_size' must be >= 0 (0 = a tenth of the images)"),
    ("pretrain.byol.momentum_start=1.5", "config key 'pretrain.byol.momentum_start' must be in [0, 1]"),
    ("pretrain.dino.output_dim=0", "config key 'pretrain.dino.output_dim' must be positive"),
    ("pretrain.electra.generator_width=2", "config key 'pretrain.electra.generator_width' must be in (0, 1]"),
    ("pretrain.mlm.mask_probability=1.0", "config key 'pretrain.mlm.mask_probability' must be in (0, 1)"),
    ("pretrain.byol.temperature=0.1", "unknown config key 'pretrain.byol.temperature'"),
])
def test_bad_values_name_the_key(override, needle):
    with pytest.raises(UserError) as err:
        load_config(None, [override])
    assert needle in str(err.value)


def test_method_keys_live_in_their_section_and_old_names_still_work(tmp_path):
    cfg = load_config(None, ["pretrain.temperature=0.1", "pretrain.mask_probability=0.2", "model.projection_dim=32"])
    assert cfg.pretrain.simclr.temperature == 0.1 and cfg.pretrain.simclr.projection_dim == 32
    assert cfg.pretrain.mlm.mask_probability == 0.2
    old = tmp_path / "old.yaml"  # a config written before the keys moved
    old.write_text("task: simclr\nmodel:\n  projection_hidden_dim: 64\npretrain:\n  temperature: 0.3\n")
    cfg = load_config(old)
    assert cfg.pretrain.simclr.temperature == 0.3 and cfg.pretrain.simclr.projection_hidden_dim == 64
    both = tmp_path / "both.yaml"
    both.write_text("pretrain:\n  temperature: 0.3\n  simclr:\n    temperature: 0.2\n")
    with pytest.raises(UserError, match="'pretrain.temperature' is the old name of 'pretrain.simclr.temperature'"):
        load_config(both)
    table = describe_schema()
    for key in ("pretrain.simclr.temperature", "pretrain.byol.momentum_start", "pretrain.vicreg.variance_weight",
                "pretrain.dino.local_crops", "pretrain.mlm.mask_probability", "pretrain.electra.generator_width"):
        assert f"| `{key}` |" in table, key


def test_run_dir_reads_old_key_names_ignores_other_methods_sections_and_counts_new_keys_at_default():
    from ssl_pipeline.run_dir import recipe_changes

    new = load_config(None, ["pretrain.simclr.temperature=0.3", "pretrain.byol.momentum_start=0.9"]).to_dict()
    old = load_config(None, ["pretrain.simclr.temperature=0.3"]).to_dict()
    old["pretrain"].pop("simclr")
    old["pretrain"]["temperature"] = 0.3  # as config.json was written before the move
    assert recipe_changes(old, new) == []
    old["pretrain"]["temperature"] = 0.5
    assert [c[0] for c in recipe_changes(old, new)] == ["pretrain.simclr.temperature"]
    # a key the run's config.json lacks (added to the schema later) counts at its default, which behaves as before
    old["pretrain"]["temperature"] = 0.3
    del old["model"]["attention_dropout"]
    assert recipe_changes(old, new) == []
    newer = load_config(None, ["pretrain.simclr.temperature=0.3", "model.attention_dropout=0.1"]).to_dict()
    assert recipe_changes(old, newer) == [("model.attention_dropout", 0.0, 0.1)]


def test_a_finished_run_is_complete_only_for_the_budget_it_was_made_with(tmp_path):
    import json

    from ssl_pipeline.run_dir import check_pretrain_dir, mark_complete

    (tmp_path / "encoder").mkdir()
    cfg = load_config(None, ["pretrain.epochs=3", "pretrain.min_steps=50"])
    (tmp_path / "config.json").write_text(json.dumps(cfg.to_dict()))
    mark_complete(tmp_path, 50, cfg)
    assert check_pretrain_dir(tmp_path, cfg) == "complete"
    assert check_pretrain_dir(tmp_path, load_config(None, ["pretrain.epochs=3", "pretrain.min_steps=80"])) == "resume"
    # a run finished before min_steps existed trained on its epochs alone: complete under min_steps=0, and a floor
    # asked for now resumes it (the engine trains it up to the floor, or ends at once if it is past it)
    done = json.loads((tmp_path / "pretrain_done.json").read_text())
    del done["min_steps"]
    (tmp_path / "pretrain_done.json").write_text(json.dumps(done))
    assert check_pretrain_dir(tmp_path, load_config(None, ["pretrain.epochs=3", "pretrain.min_steps=0"])) == "complete"
    assert check_pretrain_dir(tmp_path, cfg) == "resume"


def test_cli_error_is_one_line_exit_2(tmp_path):
    proc = run_stage("pretrain", ["--config", "configs/vision/simclr_digits.yaml", "pretrain.epochz=1",
                                  f"output_dir={tmp_path / 'out'}"], check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: unknown config key 'pretrain.epochz' (did you mean 'pretrain.epochs'?)"
    assert not (tmp_path / "out").exists()


def test_loading_a_config_imports_no_model_library():
    """The schema holds every method's section, so loading it imports every method module: those must leave timm and
    transformers to the task that uses them (a config error then prints in ~2 s, not ~6; a text run loads no timm)."""
    import subprocess
    import sys

    from conftest import ROOT, cli_env

    code = ("import sys; from ssl_pipeline.config import load_config; "
            "[load_config(c, []) for c in ('configs/vision/simclr_digits.yaml', 'configs/text/mlm_embedded.yaml')]; "
            "print(sorted(m for m in ('timm', 'torchvision', 'transformers', 'lightly') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=cli_env(), capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "[]", proc.stdout + proc.stderr


def test_missing_config_file(tmp_path):
    proc = run_stage("pretrain", ["--config", str(tmp_path / "nope.yaml")], check=False)
    assert proc.returncode == 2
    assert "config file not found" in proc.stderr and "Traceback" not in proc.stderr


def test_schema_table_lists_every_section():
    table = describe_schema()
    for key in ("`task`", "`data.source`", "`model.backbone`", "`pretrain.max_steps`", "`finetune.label_fractions`"):
        assert key in table


def test_shipped_configs_parse(ROOT_DIR):
    for f in sorted((ROOT_DIR / "configs").rglob("*.yaml")):
        if "accelerate" in f.parts:
            continue
        load_config(f)


@pytest.mark.parametrize("files, source", [
    ("[reviews.csv]", "csv"), ("[a.TSV]", "csv"), ("[data/*.jsonl,more.json]", "jsonl"), ("[x.parquet]", "parquet"),
    ("[notes.txt]", "text"),
])
def test_auto_source_is_the_files_suffix(files, source):
    cfg = load_config("configs/text/mlm_files.yaml", [f"data.files={files}"])
    assert cfg.data.source == source
    assert load_config("configs/text/mlm_files.yaml", ["data.files=null", "data.root=corpus.csv"]).data.source == "csv"
    assert load_config("configs/text/mlm_files.yaml", ["data.root=news"]).data.source == "folder"  # a folder of documents


@pytest.mark.parametrize("files, needle", [
    ("[a.csv,b.jsonl]", "data.files mix formats (csv, jsonl): data.source=auto needs one"),
    ("[data/corpus]", "cannot tell the format of data/corpus from its suffix"),
    ("[labels.xls]", "cannot tell the format of labels.xls from its suffix: save the sheet as .xlsx or .csv"),
    ("null", "data.source=auto reads the format from the suffix of data.files, and none are given"),
])
def test_auto_source_refuses_what_it_cannot_tell(files, needle):
    with pytest.raises(UserError) as err:
        load_config("configs/text/mlm_files.yaml", [f"data.files={files}", "data.root=null"])
    assert needle in str(err.value)


def test_the_text_starting_config_reads_a_csv_as_given(tmp_path):
    """The starting config's own usage line (`data.files=[train.csv]`, no data.source) reads the CSV."""
    from ssl_pipeline.data.text import load_texts

    f = tmp_path / "train.csv"
    f.write_text("text,label\n" + "".join(f"\"review {i}, with a comma\",{'pos' if i % 2 else 'neg'}\n" for i in range(20)))
    cfg = load_config("configs/text/mlm_files.yaml", [f"data.files=[{f}]"])
    train = load_texts(cfg.data, "train")
    assert train.class_names == ["neg", "pos"] and train.texts[0].startswith("review ") and "comma" in train.texts[0]
