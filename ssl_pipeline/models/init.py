"""Starting checkpoints (`model.init_from`): continued self-supervised pretraining instead of random weights.

Vision: a timm name with weights (`resnet50.a1_in1k`, downloaded when online), a local timm checkpoint file
(`.safetensors` / `.pth`, architecture = `model.backbone`; timm drops the classifier and adapts the first conv to
`data.channels`), or a vision encoder exported by this project (its `ssl_encoder.json` names the architecture).
Text: a Hugging Face model id or a `save_pretrained` directory (ours included): the architecture, sizes and
tokenizer come from the checkpoint, and its masked-LM head is reused when it has one.

Keys the user set that contradict the checkpoint are errors naming the key; keys left at their defaults follow
the checkpoint.
"""
from __future__ import annotations

from pathlib import Path

from torch import nn

from ..errors import UserError
from ..spec import SPEC_FILE, spec_if_exported

# model.* key -> transformers config attribute: set explicitly, they must agree with a text checkpoint
TEXT_SIZE_KEYS = {"model.hidden_size": "hidden_size", "model.num_layers": "num_hidden_layers",
                  "model.num_heads": "num_attention_heads", "model.intermediate_size": "intermediate_size",
                  "model.vocab_size": "vocab_size"}


def _explicit(cfg, key: str) -> bool:
    return key in getattr(cfg, "explicit_keys", frozenset())


def vision_init(cfg) -> tuple[nn.Module, str, bool]:
    """-> (headless timm backbone with the checkpoint's weights, its timm name, small_stem)."""
    import timm

    from .vision import apply_small_stem, create_backbone

    ref, channels = cfg.model.init_from, cfg.data.channels
    path = Path(ref).expanduser()
    spec = spec_if_exported(path) if path.is_dir() else None
    if spec is not None:
        if spec["modality"] != "vision":
            raise UserError(f"model.init_from {ref} is a {spec['modality']} encoder; task={cfg.task} needs a vision one")
        for key, value in (("model.backbone", spec["timm_name"]), ("model.small_stem", spec["small_stem"]),
                           ("data.channels", spec["channels"])):
            mine = getattr(cfg.model if key.startswith("model.") else cfg.data, key.split(".")[1])
            if mine != value and (_explicit(cfg, key) or key == "data.channels"):
                raise UserError(f"{key}={mine!r} contradicts model.init_from {ref} (trained with {value!r}); "
                                f"set {key}={value!r} or leave it unset")
        from safetensors.torch import load_file

        backbone = create_backbone(spec["timm_name"], spec["channels"], spec["small_stem"])
        backbone.load_state_dict(load_file(str(path / "model.safetensors")))
        return backbone, spec["timm_name"], spec["small_stem"]
    if path.is_dir():
        raise UserError(f"model.init_from {ref} is a directory but not an encoder exported by ssl_pipeline "
                        f"(no {SPEC_FILE}); for a timm checkpoint give the file itself")
    if path.is_file():
        backbone, name = _timm_from_file(cfg.model.backbone, path, channels), cfg.model.backbone
    elif timm.is_model(ref):
        name = ref
        arch = ref.split(".")[0]
        if _explicit(cfg, "model.backbone") and cfg.model.backbone.split(".")[0] != arch:
            raise UserError(f"model.backbone={cfg.model.backbone!r} contradicts model.init_from {ref}; "
                            f"leave model.backbone unset or set it to {arch!r}")
        try:
            backbone = timm.create_model(ref, pretrained=True, num_classes=0, in_chans=channels)
        except Exception as err:  # no network, unknown tag, ...: many exception types
            raise UserError(f"cannot load timm weights {ref}: {_first_line(err)} (no network? download once, or give "
                            "a local checkpoint file)") from None
    else:
        raise UserError(f"model.init_from {ref!r} is neither an existing file or directory nor a timm model name")
    if cfg.model.small_stem:  # the pretrained 7x7 stem is replaced: its conv starts from random weights
        apply_small_stem(backbone, channels)
    return backbone, name, cfg.model.small_stem


def _first_line(err: Exception) -> str:
    return (str(err).splitlines() or [type(err).__name__])[0][:300]


def _timm_from_file(name: str, path: Path, channels: int) -> nn.Module:
    """A timm checkpoint file (safetensors or torch; wrapped `state_dict`/`model`/EMA keys and `module.` prefixes
    are unwrapped by timm) loaded into `name`. Done here rather than through timm's pretrained=True path, which
    falls back to random weights with only a warning when a model has no pretrained config (ours, custom ones)."""
    import timm
    from timm.models import load_state_dict
    from timm.models._manipulate import adapt_input_conv

    if not timm.is_model(name):
        raise UserError(f"model.backbone '{name}' is not a timm model (model.init_from {path} needs its architecture)")
    model = timm.create_model(name, pretrained=False, num_classes=0, in_chans=channels)
    try:
        state = load_state_dict(str(path))
    except Exception as err:
        raise UserError(f"model.init_from {path} is not a readable checkpoint: {_first_line(err)}") from None
    first_conv = (getattr(model, "pretrained_cfg", None) or {}).get("first_conv")
    key = f"{first_conv}.weight" if first_conv else None
    if key in state and state[key].ndim == 4 and state[key].shape[1] != channels:  # e.g. RGB weights, grey data
        state[key] = adapt_input_conv(channels, state[key])
    own = model.state_dict()
    classifier = (getattr(model, "pretrained_cfg", None) or {}).get("classifier") or "fc"
    heads = tuple(c if isinstance(c, str) else "" for c in (classifier if isinstance(classifier, (list, tuple))
                                                             else [classifier])) + ("head.", "classifier.", "fc.")
    unexpected = [k for k in state if k not in own and not k.startswith(heads)]
    missing = [k for k in own if k not in state]
    wrong = [k for k in own if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or wrong:
        example = (missing or unexpected or wrong)[0]
        raise UserError(f"model.init_from {path} does not fit model.backbone={name!r} ({len(missing)} missing, "
                        f"{len(unexpected)} unexpected, {len(wrong)} mis-shaped weights, e.g. '{example}'): "
                        "is model.backbone the checkpoint's architecture?")
    model.load_state_dict({k: state[k] for k in own})
    return model


def text_init(cfg):
    """-> (transformers masked-LM model, tokenizer) from model.init_from, checked against the explicit keys."""
    from transformers import AutoConfig, AutoModelForMaskedLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    ref = cfg.model.init_from
    spec = spec_if_exported(Path(ref).expanduser()) if Path(ref).expanduser().is_dir() else None
    if spec is not None and spec["modality"] != "text":
        raise UserError(f"model.init_from {ref} is a {spec['modality']} encoder; task={cfg.task} needs a text one")
    try:
        config = AutoConfig.from_pretrained(ref)
        tokenizer = AutoTokenizer.from_pretrained(ref)
    except Exception as err:
        raise UserError(f"cannot load model.init_from {ref!r} (a Hugging Face model id or a save_pretrained "
                        f"directory): {(str(err).splitlines() or [type(err).__name__])[0][:300]}") from None
    for key, attr in TEXT_SIZE_KEYS.items():
        mine = getattr(cfg.model, key.split(".")[1])
        if _explicit(cfg, key) and getattr(config, attr, mine) != mine:
            raise UserError(f"{key}={mine} contradicts model.init_from {ref} ({attr}={getattr(config, attr)}); "
                            "leave it unset: sizes come from the checkpoint")
    if _explicit(cfg, "model.size") or _explicit(cfg, "model.tokenizer"):
        key = "model.size" if _explicit(cfg, "model.size") else "model.tokenizer"
        raise UserError(f"{key} cannot be combined with model.init_from: the checkpoint brings its own")
    limit = getattr(config, "max_position_embeddings", None)
    if limit is not None and cfg.data.max_length > limit - 2:
        raise UserError(f"data.max_length={cfg.data.max_length} is longer than model.init_from {ref} allows "
                        f"({limit - 2} tokens)")
    if tokenizer.mask_token_id is None:
        raise UserError(f"the tokenizer of model.init_from {ref} has no mask token: it is not a masked-LM checkpoint")
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # a checkpoint without an MLM head gets a fresh one: expected, not news
    try:
        model = AutoModelForMaskedLM.from_pretrained(ref, attn_implementation="sdpa")
    except Exception as err:
        raise UserError(f"cannot load model.init_from {ref!r} as a masked LM: "
                        f"{(str(err).splitlines() or [type(err).__name__])[0][:300]}") from None
    finally:
        hf_logging.set_verbosity(verbosity)
    return model, tokenizer
