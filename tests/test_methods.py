"""The pretext methods as plug-ins: each one trains (loss falls, 2 processes where it gathers or syncs anything),
exports an encoder that loads with load_encoder (and timm / AutoModel), and the fine-tune report runs on it."""
import json
import math

import pytest
import torch

from conftest import ROOT, OneProcess, crash_then_resume, launch_args, read_metrics, run_stages
from ssl_pipeline import load_encoder
from ssl_pipeline.cli import finetune_main
from ssl_pipeline.config import load_config

VISION = ["--config", "configs/vision/simclr_digits.yaml", "pretrain.epochs=6", "pretrain.batch_size=64",
          "pretrain.log_every=6", "pretrain.checkpoint_every=1000"]
SMALL_HEADS = {  # small heads keep the test fast; the methods' own defaults are for real runs
    "dcl": ["pretrain.dcl.projection_hidden_dim=256", "pretrain.dcl.projection_dim=64"],
    "nnclr": ["pretrain.nnclr.projection_hidden_dim=256", "pretrain.nnclr.projection_dim=64"],
    "byol": ["pretrain.byol.projection_hidden_dim=256", "pretrain.byol.projection_dim=64"],
    "vicreg": ["pretrain.vicreg.expander_hidden_dim=256", "pretrain.vicreg.expander_dim=256"],
    "dino": ["pretrain.dino.head_hidden_dim=256", "pretrain.dino.output_dim=512"],
}
MULTI_CROP = ["pretrain.dino.local_crops=2", "pretrain.dino.local_crop_size=8"]
FINETUNE = ["finetune.label_fractions=[0.1]", "finetune.seeds=[0]", "finetune.methods=[linear_probe,knn,finetune]",
            "finetune.min_steps=10", "finetune.max_steps=10"]


VISION_METHODS = ["dcl", "nnclr", "byol", "vicreg", "dino"]
ELECTRA = ["--config", "configs/text/mlm_embedded.yaml", "task=electra", "pretrain.max_steps=40",
           "pretrain.batch_size=16", "pretrain.log_every=5", "pretrain.eval_every=40", "model.hidden_size=64",
           "model.num_layers=2", "model.num_heads=2", "model.intermediate_size=128", "model.vocab_size=1000"]


def _vision_args(name, out):
    # the digits' own 8 px (a quarter of the 16 px steps' time); DINO's loss, slow to fall, needs the 16 px views
    size = 16 if name == "dino" else 8
    return VISION + [f"task={name}", f"output_dir={out}", f"data.image_size={size}"] + SMALL_HEADS[name]


@pytest.fixture(scope="module")
def two_process_runs(tmp_path_factory):
    """Every method's 2-process run, in one launch (the start-up of a launch costs more than a run here)."""
    root = tmp_path_factory.mktemp("methods")
    args = {name: _vision_args(name, root / name) for name in VISION_METHODS}
    args["electra"] = ELECTRA + [f"output_dir={root / 'electra'}"]
    run_stages([["pretrain", *a] for a in args.values()], root)
    return {name: (root / name, a) for name, a in args.items()}


@pytest.fixture(params=VISION_METHODS)
def vision_run(request, two_process_runs):
    out, args = two_process_runs[request.param]
    return request.param, out, args


def test_vision_method_learns_on_two_processes_and_exports(vision_run):
    name, out, _ = vision_run
    rows = [r for r in read_metrics(out) if "loss" in r]
    assert rows[-1]["step"] == 6 * (1437 // 128)  # 2 processes x 64 per step
    first, last = rows[0]["loss"], rows[-1]["loss"]
    if name == "dino":  # DINO's loss starts near ln(prototypes) and falls slowly; uniform outputs would stay there
        assert last < first and last < math.log(512) - 0.1, (first, last)
    else:
        assert last < first - 0.05 * abs(first), (name, first, last)
    spec = json.loads((out / "encoder" / "ssl_encoder.json").read_text())
    assert spec["pretext"] == name
    enc = load_encoder(out / "encoder")
    with torch.no_grad():
        z = enc(torch.rand(4, 1, 16, 16))
    assert z.shape == (4, spec["embedding_dim"]) and torch.isfinite(z).all()


def test_fine_tune_report_runs_on_each_vision_method(vision_run):
    name, out, args = vision_run
    finetune_main(args + FINETUNE)  # in-process: a launch would import torch & co. again
    result = json.loads((out / "label_efficiency.json").read_text())
    methods = {r["method"] for r in result["rows"]}
    assert methods == {"linear_probe", "knn", "finetune"}
    probe = [r for r in result["rows"] if r["method"] == "linear_probe"][0]
    assert probe["accuracy"] > 0.5  # 10 classes: a trained encoder is far above chance even after 66 steps
    assert (out / "label_efficiency.md").read_text().count("|") > 10 and (out / "label_efficiency.png").is_file()


def test_teachers_follow_the_online_network():
    """BYOL's and DINO's teachers: an EMA of the online weights with the scheduled momentum, never trained."""
    from ssl_pipeline.tasks.byol import BYOLTask
    from ssl_pipeline.tasks.dino import DINOTask

    for cls, name in ((BYOLTask, "byol"), (DINOTask, "dino")):
        cfg = load_config("configs/vision/simclr_digits.yaml", [f"task={name}", f"pretrain.{name}.momentum_start=0.5",
                                                               f"pretrain.{name}.momentum_end=1.0"])
        task = cls(cfg, OneProcess())
        model = task.model
        teacher = model.teacher_backbone
        assert all(not p.requires_grad for p in teacher.parameters())
        assert not any(p is q for p in teacher.parameters() for q in task.model.backbone.parameters())
        before = [p.detach().clone() for p in teacher.parameters()]
        with torch.no_grad():
            for p in model.backbone.parameters():
                p.add_(1.0)
        task.after_optimizer_step(model, 0, 10)  # cosine schedule at step 0: momentum_start = 0.5
        online = list(model.backbone.parameters())
        for t, b, o in zip(teacher.parameters(), before, online):
            assert torch.allclose(t, 0.5 * b + 0.5 * o, atol=1e-6), name
        frozen = [p.detach().clone() for p in teacher.parameters()]
        task.after_optimizer_step(model, 10, 10)  # last step: momentum_end = 1.0 leaves the teacher as it is
        assert all(torch.equal(t, f) for t, f in zip(teacher.parameters(), frozen))


def test_dino_resume_continues_teacher_centre_and_schedules(tmp_path):
    """A crash after a checkpoint, then resume=auto, ends where the uninterrupted run ends (teacher, centre and
    teacher-temperature schedule are in the checkpoint)."""
    from safetensors.torch import load_file

    args = VISION[:2] + ["task=dino", "pretrain.max_steps=8", "pretrain.batch_size=64", "pretrain.checkpoint_every=3",
                         "pretrain.log_every=1", "pretrain.dino.teacher_temperature=0.07",
                         "pretrain.dino.teacher_temperature_warmup_fraction=1.0"] + SMALL_HEADS["dino"] + MULTI_CROP
    full, crashed = crash_then_resume(args, tmp_path)
    a, b = load_file(str(full / "encoder" / "model.safetensors")), load_file(str(crashed / "encoder" / "model.safetensors"))
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-5), k
    temps_full = [r["teacher_temperature"] for r in read_metrics(full) if "teacher_temperature" in r]
    temps_resumed = [r["teacher_temperature"] for r in read_metrics(crashed) if "teacher_temperature" in r]
    assert temps_full == pytest.approx(temps_resumed) and temps_full[0] < temps_full[-1]


def test_electra_learns_on_two_processes_and_exports_the_discriminator(two_process_runs):
    from transformers import AutoModel

    out, args = two_process_runs["electra"]
    rows = [r for r in read_metrics(out) if "loss" in r]
    assert rows[-1]["loss"] < rows[0]["loss"] - 1.0
    for key in ("generator_loss", "discriminator_loss", "discriminator_accuracy", "replaced_fraction"):
        assert key in rows[-1]
    assert 0.05 < rows[-1]["replaced_fraction"] < 0.2  # ~15 % of the tokens are filled in by the generator
    evals = [r for r in read_metrics(out, every_row=True) if "eval_discriminator_accuracy" in r]
    assert evals and all(math.isfinite(evals[-1][k]) for k in ("eval_generator_perplexity", "eval_discriminator_loss"))
    spec = json.loads((out / "encoder" / "ssl_encoder.json").read_text())
    assert spec["pretext"] == "electra" and spec["embedding_dim"] == 64
    hf = AutoModel.from_pretrained(str(out / "encoder"))  # the discriminator, as any transformers user loads it
    assert hf.config.hidden_size == 64 and hf.config.num_hidden_layers == 2
    enc = load_encoder(out / "encoder")
    z = enc.encode(["Return the absolute value.", "Open a file and return a stream."])
    assert z.shape == (2, 64) and torch.isfinite(z).all()
    finetune_main(args + FINETUNE)  # in-process: a launch would import torch & co. again
    result = json.loads((out / "label_efficiency.json").read_text())
    assert {r["method"] for r in result["rows"]} == {"linear_probe", "knn", "finetune"}


def test_switching_task_on_a_shipped_config_keeps_other_sections():
    cfg = load_config("configs/vision/simclr_digits.yaml", ["task=byol"])
    assert cfg.task == "byol" and cfg.pretrain.simclr.temperature == 0.2  # SimCLR's keys stay, unused
    assert cfg.pretrain.byol.momentum_start == 0.99
    cfg = load_config("configs/text/mlm_debian_descriptions.yaml", ["task=electra", "pretrain.electra.generator_width=0.5"])
    assert cfg.task == "electra" and cfg.pretrain.electra.generator_width == 0.5


def test_vicreg_and_dino_statistics_span_both_processes(tmp_path):
    """VICReg's variance/covariance and DINO's teacher centre are computed over the global batch, as the tasks
    are built on 2 processes: the mean of the per-rank VICReg losses equals the loss of the whole batch on one
    process, and both ranks hold the same centre, the update from the global batch mean."""
    import subprocess

    from lightly.loss import VICRegLoss

    from conftest import cli_env

    out = tmp_path / "stats.pt"
    cmd = launch_args(2)[:-1] + [str(ROOT / "tests/scripts/method_stats_dist.py"), str(out)]
    proc = subprocess.run(cmd, env=cli_env(), capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = torch.load(out)
    g = torch.Generator().manual_seed(0)
    za, zb, teacher = torch.randn(16, 8, generator=g), torch.randn(16, 8, generator=g), torch.randn(2, 16, 8, generator=g)
    whole = VICRegLoss()(za, zb)
    halves = VICRegLoss()(za[:8], zb[:8]), VICRegLoss()(za[8:], zb[8:])
    assert torch.allclose(got["vicreg_losses"].mean(), whole, atol=1e-5)
    assert not torch.allclose(whole, sum(halves) / 2, atol=1e-3)  # without the gather the two would differ
    expected_centre = (1 - 0.9) * teacher.mean(dim=(0, 1))  # centre starts at 0, momentum 0.9
    assert torch.allclose(got["centres"][0], got["centres"][1])
    assert torch.allclose(got["centres"][0], expected_centre, atol=1e-6)


def test_electra_uniform_replacement_diagnostic_fills_only_masked_positions_with_ordinary_tokens():
    """docs/diagnostics/electra_uniform_replacements.py (docs/results.md) swaps the generator's samples for uniform
    ones; it must corrupt exactly the masked positions, never with a special token, and keep the forward's outputs."""
    import importlib.util

    from ssl_pipeline.masking import IGNORE
    from ssl_pipeline.models.text import ReplacedTokenDetection, base_encoder, masked_lm

    spec = importlib.util.spec_from_file_location("diag", ROOT / "docs/diagnostics/electra_uniform_replacements.py")
    diag = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(diag)
    m = load_config("configs/text/mlm_embedded.yaml", ["model.hidden_size=32", "model.num_layers=1", "model.num_heads=2",
                                                       "model.intermediate_size=64"]).model
    vocab, L = 300, 16
    model = ReplacedTokenDetection(masked_lm(m, vocab, L, 0), base_encoder(m, vocab, L, 0))
    torch.manual_seed(0)
    ids = torch.randint(5, vocab, (4, L))
    positions = torch.tensor([1, 7, 20, 33, 50, 0])  # flat indices into the 4 x 16 tokens; the last one is padding
    labels = ids.flatten()[positions].clone()
    labels[-1] = IGNORE
    masked = ids.flatten().clone()
    masked[positions[:-1]] = 4
    seen = []
    model.discriminator.register_forward_pre_hook(lambda mod, args, kwargs: seen.append(kwargs["input_ids"]),
                                                  with_kwargs=True)
    gen_logits, disc_logits, replaced = diag.uniform_replacements(model, masked.view_as(ids), None, positions, labels, ids)
    assert gen_logits.shape == (6, vocab) and disc_logits.shape == (4, L)
    flat, corrupted = replaced.flatten(), seen[0].flatten()
    assert flat.sum() >= 4 and not flat[[i for i in range(4 * L) if i not in positions[:-1].tolist()]].any()
    assert torch.equal(flat, corrupted != ids.flatten()) and corrupted.min() >= 5  # no [PAD] [UNK] [CLS] [SEP] [MASK]
