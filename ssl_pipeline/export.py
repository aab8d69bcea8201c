"""Exported encoders: `OUTPUT_DIR/encoder/` holds weights plus `ssl_encoder.json`, which says how to rebuild them.

Vision: `model.safetensors` is the timm backbone's state dict (loads into `timm.create_model(name,
num_classes=0, in_chans=C)`; with `small_stem` apply `ssl_pipeline.models.vision.apply_small_stem` first).
Text: a `transformers` directory (`save_pretrained` of the MLM model and its tokenizer).
`load_encoder(path)` rebuilds either as a module that returns one embedding per input.
"""
from __future__ import annotations

import json
from pathlib import Path

from .atomic import atomic_dir
from .errors import UserError
from .spec import SPEC_FILE


def save_vision_encoder(backbone, path, cfg, pretext: str | None = None, extra: dict | None = None) -> None:
    """`pretext`: what trained it (default the config's task; "none" for a starting checkpoint as it is);
    `extra`: more spec fields (the pretraining data's leakage record)."""
    from safetensors.torch import save_file

    state = {k: v.detach().cpu().contiguous() for k, v in backbone.state_dict().items()}
    spec = {
        "modality": "vision",
        "format": "timm",
        "timm_name": cfg.model.backbone,
        "timm_kwargs": {"num_classes": 0, "in_chans": cfg.data.channels},
        "small_stem": cfg.model.small_stem,
        "image_size": cfg.data.image_size,
        "channels": cfg.data.channels,
        "input": "float images in [0, 1] (or uint8), shape (B, C, H, W); normalised inside as (x - 0.5) / 0.5",
        "embedding_dim": int(backbone.num_features),
        "pretext": pretext or cfg.task,
        "init_from": cfg.model.init_from,
        **(extra or {}),
    }
    with atomic_dir(path) as tmp:
        save_file(state, str(tmp / "model.safetensors"))
        (tmp / SPEC_FILE).write_text(json.dumps(spec, indent=2) + "\n")


def add_to_spec(path, key: str, value) -> None:
    """One more field in an exported encoder's spec (the pretraining record), written atomically."""
    from .atomic import write_json

    spec = read_spec(path)
    spec[key] = value
    write_json(Path(path) / SPEC_FILE, spec)


def resolve_encoder_path(cfg, also: str = "") -> Path:
    """finetune.encoder, or the run's own export; a missing default export means pretraining has not run (`also`:
    another way out the caller knows of, added to that error)."""
    path = Path(cfg.finetune.encoder or Path(cfg.output_dir) / "encoder")
    if cfg.finetune.encoder is None and not path.exists():
        raise UserError(f"no pretrained encoder at {path}: run `pretrain` with this config first, "
                        f"or set finetune.encoder=PATH to an exported encoder{also}")
    if cfg.finetune.encoder is not None and not (path.expanduser() / SPEC_FILE).is_file():
        # a hub id (bert-base-uncased), a save_pretrained folder or a timm file: what users would otherwise fine-tune
        ref = cfg.finetune.encoder
        what = "does not exist" if not path.expanduser().exists() else f"is not an encoder exported by pretrain (no {SPEC_FILE})"
        raise UserError(f"finetune.encoder {ref} {what}. For a public or local checkpoint (a hub id, a save_pretrained "
                        f"folder, a timm name or file): pretrain from it, model.init_from={ref}, and fine-tuning scores "
                        f"it too (rows base_probe, base_finetune); or give it as finetune.base_encoder={ref} beside "
                        "the encoder pretrained here")
    return path.expanduser()


def read_spec(path) -> dict:
    p = Path(path)
    if not p.is_dir():
        raise UserError(f"encoder path does not exist: {p}")
    spec_file = p / SPEC_FILE
    if not spec_file.is_file():
        raise UserError(f"{p} is not an exported encoder (no {SPEC_FILE}); run pretrain first")
    return json.loads(spec_file.read_text())


def load_encoder(path, expect_modality: str | None = None, role: str = "encoder"):
    """Rebuilds an exported encoder as an eval-mode `torch.nn.Module` returning embeddings (B, D). `role`: what
    the user called it (a config key), for the modality error."""
    spec = read_spec(path)
    if expect_modality and spec["modality"] != expect_modality:
        raise UserError(f"{role} {path} is a {spec['modality']} encoder, but this config needs a "
                        f"{expect_modality} encoder")
    if spec["modality"] == "vision":
        from safetensors.torch import load_file

        from .models.vision import VisionEncoder, create_backbone

        backbone = create_backbone(spec["timm_name"], spec["channels"], spec["small_stem"])
        backbone.load_state_dict(load_file(str(Path(path) / "model.safetensors")))
        return VisionEncoder(backbone, spec).eval()
    from .models.text import TextEncoder

    return TextEncoder.from_pretrained(path, spec).eval()


def save_text_encoder(mlm_model, tokenizer, path, cfg, pretext: str | None = None, extra: dict | None = None) -> None:
    """`save_pretrained` of the MLM model and tokenizer: loads with AutoModel / AutoModelForMaskedLM / AutoTokenizer."""
    spec = {
        "modality": "text",
        "format": "transformers",
        "max_length": cfg.data.max_length,
        "pooling": "mean over attention_mask",
        "input": "input_ids and attention_mask from the saved tokenizer",
        "embedding_dim": int(mlm_model.config.hidden_size),
        "architecture": mlm_model.config.model_type,
        "pretext": pretext or cfg.task,
        "init_from": cfg.model.init_from,
        **(extra or {}),
    }
    with atomic_dir(path) as tmp:
        mlm_model.save_pretrained(str(tmp))
        if hasattr(tokenizer, "save_pretrained"):
            tokenizer.save_pretrained(str(tmp))
        (tmp / SPEC_FILE).write_text(json.dumps(spec, indent=2) + "\n")
