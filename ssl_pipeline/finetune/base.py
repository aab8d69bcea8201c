"""The starting checkpoint as an exported encoder, so the base_* rows run through the same code as SSL rows.

An encoder exported by this project is used where it is. Anything else (a timm name with weights, a timm
checkpoint file, a Hugging Face model id or directory) is exported once into OUTPUT_DIR/base_encoder/ in the
same format — what `load_encoder`, the labeled-data adapters and the fingerprint already read.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from ..config import Config, base_encoder_ref
from ..errors import UserError
from ..export import SPEC_FILE, save_text_encoder, save_vision_encoder

STARTING_CHECKPOINT = "none (starting checkpoint)"  # the `pretext` of a checkpoint exported as is


def base_encoder_dir(cfg: Config, output_dir: Path, modality: str, accelerator) -> Path:
    ref = base_encoder_ref(cfg)
    path = Path(ref).expanduser()
    if (path / SPEC_FILE).is_file():
        spec = json.loads((path / SPEC_FILE).read_text())
        if spec["modality"] != modality:
            raise UserError(f"finetune.base_encoder {ref} is a {spec['modality']} encoder; this run needs {modality}")
        return path
    target = output_dir / "base_encoder"
    spec_file = target / SPEC_FILE
    fresh = not (spec_file.is_file() and json.loads(spec_file.read_text()).get("init_from") == ref)
    if fresh and accelerator.is_main_process:
        as_init = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, init_from=ref))
        object.__setattr__(as_init, "explicit_keys", getattr(cfg, "explicit_keys", frozenset()))
        if modality == "vision":
            from ..models.init import vision_init
            from ..models.vision import check_image_size

            backbone, name, small_stem = vision_init(as_init)
            check_image_size(backbone, cfg.data.channels, cfg.data.image_size)
            as_init = dataclasses.replace(as_init, model=dataclasses.replace(as_init.model, backbone=name,
                                                                              small_stem=small_stem))
            save_vision_encoder(backbone, target, as_init, pretext=STARTING_CHECKPOINT)
        else:
            from ..models.init import text_init

            model, tokenizer = text_init(as_init)
            save_text_encoder(model, tokenizer, target, as_init, pretext=STARTING_CHECKPOINT)
        accelerator.print(f"base encoder {ref} exported to {target} for the base_* rows")
    accelerator.wait_for_everyone()
    return target
