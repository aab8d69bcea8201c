"""pretrain.log_with / finetune.log_with through Accelerate's trackers, offline: TensorBoard event files, a wandb
offline run, an MLflow file store under OUTPUT_DIR/mlruns; a missing tracker package is a one-line error."""
import pytest

from ssl_pipeline.cli import finetune_main, pretrain_main

BASE = ["--config", "configs/vision/simclr_digits.yaml", "pretrain.max_steps=4", "pretrain.batch_size=32",
        "pretrain.log_every=2", "model.projection_hidden_dim=32"]


def _metric_names(mlruns):
    """Metric names in an MLflow file store ('a/b' names are nested directories under metrics/)."""
    return {str(f.relative_to(d)) for d in mlruns.rglob("metrics") for f in d.rglob("*") if f.is_file()}


def test_pretrain_and_finetune_log_to_all_three_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb_home"))
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    (tmp_path / "wandb_home").mkdir()
    out = tmp_path / "run"
    pretrain_main(BASE + [f"output_dir={out}", "pretrain.log_with=[tensorboard,wandb,mlflow]"])
    assert list((out / "tensorboard").rglob("events.out.tfevents.*"))
    assert {"loss", "lr", "knn_accuracy", "rankme"} <= _metric_names(out / "mlruns")
    runs = list((tmp_path / "wandb_home" / "wandb").glob("offline-run-*"))
    assert runs and list(runs[0].glob("*.wandb"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # the pretrain run set it for its own directory
    finetune_main(BASE + [f"output_dir={out}", "finetune.methods=[knn]", "finetune.seeds=[0]",
                          "finetune.label_fractions=[0.1,1.0]", "finetune.log_with=[mlflow]"])
    names = _metric_names(out / "mlruns")
    assert {"knn/10pct/seed_0", "knn/100pct/seed_0", "mean/knn/10pct"} <= names


def test_missing_tracker_package_is_one_line(tmp_path, monkeypatch, capsys):
    from ssl_pipeline import engine

    monkeypatch.setitem(engine.TRACKER_PACKAGES, "wandb", "no_such_package_xyz")
    with pytest.raises(SystemExit) as code:
        pretrain_main(BASE + [f"output_dir={tmp_path / 'o'}", "pretrain.log_with=[wandb]"])
    err = capsys.readouterr().err
    assert code.value.code == 2 and "pretrain.log_with=wandb needs the no_such_package_xyz package" in err
    assert "Traceback" not in err
