"""Model cards for the Hub: generated offline from the run (data, budget, label-efficiency table + plot); the push
is a thin huggingface_hub call, checked with a stand-in API; failures are one line."""
import re

import pytest

from ssl_pipeline.cli import finetune_main, pretrain_main
from ssl_pipeline import push as P


@pytest.fixture(scope="module")
def vision_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("push") / "run"
    base = ["--config", "configs/vision/simclr_digits.yaml", f"output_dir={out}", "pretrain.max_steps=2",
            "pretrain.batch_size=32", "model.projection_hidden_dim=32"]
    pretrain_main(base)
    finetune_main(base + ["finetune.methods=[knn,classic]", "finetune.seeds=[0]"])
    return out


def test_dry_run_writes_a_card_with_data_budget_and_label_efficiency(vision_run, capsys):
    P.main([str(vision_run / "encoder"), "me/digits-simclr", "--dry-run"])
    assert "nothing pushed" in capsys.readouterr().out
    card = (vision_run / "encoder" / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: timm\npipeline_tag: image-feature-extraction")
    assert "pretrained with **simclr**" in card and "budget: 2 optimizer steps" in card
    # the passes actually trained (the record's), not the config's epochs: pretrain.min_steps may exceed those
    assert re.search(r"budget: 2 optimizer steps \([0-9.]+ passes over the data\)", card)
    assert "- what it reached: pretrained for 2 steps (" in card  # the encoder's pretraining record
    assert "mixed precision no" in card  # what the run computed in (the record's), not "as launched"
    assert "| knn |" in card and "| classic |" in card and "![label efficiency](label_efficiency.png)" in card
    assert (vision_run / "encoder" / "label_efficiency.png").is_file()
    assert "snapshot_download('me/digits-simclr')" in card


def test_push_is_create_repo_then_upload_folder(vision_run, monkeypatch, capsys):
    calls = []

    class FakeApi:
        def create_repo(self, repo_id, private=False, exist_ok=False):
            calls.append(("create", repo_id, private, exist_ok))

        def upload_folder(self, folder_path, repo_id, commit_message):
            calls.append(("upload", folder_path, repo_id))
            return type("Info", (), {"commit_url": f"https://hub/{repo_id}/commit/1"})()

    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    P.main([str(vision_run / "encoder"), "me/digits-simclr", "--private"])
    assert calls == [("create", "me/digits-simclr", True, True),
                     ("upload", str(vision_run / "encoder"), "me/digits-simclr")]
    assert "pushed: https://hub/me/digits-simclr/commit/1" in capsys.readouterr().out


def test_failures_are_one_line(tmp_path, monkeypatch, capsys):
    with pytest.raises(SystemExit) as code:
        P.main([str(tmp_path), "me/x", "--dry-run"])
    assert code.value.code == 2 and "not an encoder exported by ssl_pipeline" in capsys.readouterr().err


def test_text_card_loads_with_transformers(tmp_path, capsys):
    out = tmp_path / "text"
    pretrain_main(["--config", "configs/text/mlm_embedded.yaml", f"output_dir={out}", "pretrain.max_steps=1",
                   "pretrain.batch_size=2", "model.vocab_size=200"])
    P.main([str(out / "encoder"), "me/doc-mlm", "--dry-run"])
    card = (out / "encoder" / "README.md").read_text()
    assert "library_name: transformers" in card and "AutoModel.from_pretrained('me/doc-mlm')" in card
    assert "Not measured" in card
