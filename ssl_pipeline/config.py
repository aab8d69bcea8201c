"""The one typed configuration schema for both stages (`pretrain` and `finetune`).

A run is described by a YAML file plus `key=value` overrides (dotted keys, YAML-typed values):

    accelerate launch pretrain --config configs/vision/simclr_digits.yaml pretrain.epochs=5 seed=1

Every key is declared below with its type and default; the README's "Configuration" section is generated
from these docstrings' neighbours (the field comments). Unknown keys and badly typed values raise
`UserError` naming the key, with the closest valid key suggested.
"""
from __future__ import annotations

import codecs
import dataclasses
import difflib
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional

import yaml

from .errors import UserError
from .finetune.evaluators import BASE_METHODS, DEFAULT_METHODS, ORDER, REQUESTABLE


@dataclass
class AugmentConfig:
    """SimCLR view augmentations, applied on the training device to whole batches."""

    crop_scale_min: float = 0.08  # RandomResizedCrop lower area bound (0.2 suits 28-32 px images)
    flip_p: float = 0.5  # horizontal flip probability
    jitter_p: float = 0.8  # probability of colour jitter
    jitter_strength: float = 1.0  # SimCLR's s: brightness/contrast/saturation 0.8*s, hue 0.2*s
    grayscale_p: float = 0.2  # probability of converting to grayscale (RGB only)
    blur_p: float = 0.0  # Gaussian blur probability (SimCLR uses 0.5 at 224 px; off for small images)


@dataclass
class DataConfig:
    source: str = "embedded"  # embedded | torchvision | hf | folder | webdataset | synthetic (vision); embedded | folder | text | jsonl | csv | parquet | excel | hf | synthetic (text); auto: text | jsonl | csv | parquet | excel (.xlsx) from the suffix of data.files, folder for a directory in data.root
    name: Optional[str] = None  # torchvision dataset class (FashionMNIST, CIFAR10, STL10) or HF hub name
    root: Optional[str] = None  # local directory or file(s) for torchvision / folder / text / jsonl sources
    files: Optional[list[str]] = None  # explicit files or globs (text / jsonl / csv / parquet): the training pool
    test_files: Optional[list[str]] = None  # file sources (text; hf with data.files, e.g. a csv of image paths): your own test file(s) or globs; when set nothing is carved and pretraining never reads them
    validation_files: Optional[list[str]] = None  # file sources: your own validation file(s), scored by finetune.evaluate_on=validation (else carved from train)
    extra_pretrain_files: Optional[list[str]] = None  # text: more unlabeled JSON-lines/text files, used by pretraining only
    download: bool = False  # let torchvision / HF download when online
    image_size: int = 32  # images are resized to image_size x image_size
    channels: int = 3  # 1 (grayscale) or 3 (RGB); images are converted to this
    num_samples: int = 1024  # synthetic sources: number of samples
    num_classes: int = 10  # synthetic sources: number of classes
    image_column: str = "image"  # hf: column holding images (absent: the dataset's one Image column, e.g. CIFAR-10's img)
    text_column: str | list[str] = "text"  # text sources: column holding the text, or several joined into one text (e.g. [title, body]); the default 'text', absent: the table's one string column besides the label
    label_column: str = "label"  # labeled sources: column holding the label (hf, absent: the one ClassLabel column); rows with an empty label are pretraining-only
    encoding: str = "utf-8"  # text files (csv / jsonl / txt): character encoding, e.g. cp1252 for Excel exports on Windows
    sheet: Optional[str] = None  # excel (.xlsx): the sheet to read, by name, or 'all' (every sheet, one header); default: the first (the run says when there are more)
    csv_delimiter: str = "auto"  # csv: field separator; auto = guessed from the header line (, ; tab |), tab for .tsv; or one character, or 'tab'
    csv_columns: Optional[list[str]] = None  # csv/tsv without a header row (its first line is data): names for its columns, in order, e.g. [label,title,text]
    max_length: int = 128  # text: tokens per packed block
    streaming: bool = False  # hf (text or images): stream the dataset as it trains, each process reading its own part (needs pretrain.max_steps)
    shuffle_buffer: int = 2000  # webdataset and streamed hf images: images held in each reader's shuffle buffer
    test_fraction: float = 0.2  # held-out split carved (stratified, seeded) when a source has no test split
    split_seed: int = 0  # seed of that carve; fixed so pretraining and finetuning agree on it
    skip_corrupt: bool = False  # folder: skip unreadable images (counted and reported) instead of failing
    leakage_check: bool = True  # before pretraining, count pretraining examples that duplicate a test example (README 'Leakage guard'); off only to save the pass over a very large image folder
    dedupe: bool = False  # drop those duplicates from pretraining (needs data.leakage_check)
    num_workers: int = 0  # DataLoader workers for images decoded per sample (folder, hf: when over data.in_memory_gb)
    in_memory_gb: float = 8.0  # folder, hf images: decoded once, in threads, and kept in memory when they take at most this (GiB per process, at data.image_size); more are decoded every epoch
    cache_dir: Optional[str] = None  # text: where tokenized datasets are cached (default OUTPUT_DIR/cache)


@dataclass
class ModelConfig:
    init_from: Optional[str] = None  # start from a checkpoint: vision: a timm name with weights (resnet50.a1_in1k), a .safetensors/.pth file (architecture = model.backbone) or an encoder exported here; text: a Hugging Face model id or save_pretrained directory (its tokenizer and sizes are used)
    backbone: str = "resnet18"  # vision: any timm model name
    small_stem: bool = False  # vision: 3x3 stride-1 stem, no max-pool (SSL practice for <= 64 px images)
    architecture: Literal["bert", "prelayernorm"] = "bert"  # text: post-LN BERT, or the pre-LN variant (RoBERTa-PreLayerNorm), stable at higher learning rates from scratch
    size: Optional[str] = None  # text: preset (tiny | mini | small | medium | base) filling the sizes below
    vocab_size: int = 8192  # text: tokenizer vocabulary trained on the corpus
    tokenizer: Optional[str] = None  # text: path to an existing tokenizer instead of training one
    hidden_size: int = 256  # text: transformer width
    num_layers: int = 4  # text: transformer layers
    num_heads: int = 4  # text: attention heads
    intermediate_size: int = 1024  # text: feed-forward width
    dropout: float = 0.1  # text: hidden-state dropout
    attention_dropout: float = 0.0  # text: attention-probability dropout; 0 (MosaicBERT's choice) skips the dropout mask and lets SDPA use its fused GPU kernels


@dataclass
class PretrainConfig:
    batch_size: int = 256  # per process
    epochs: int = 10  # passes over the unlabeled training split
    max_steps: Optional[int] = None  # optimizer steps; wins over epochs and min_steps when set
    max_minutes: Optional[float] = None  # wall-clock budget of the training loop: the step count is planned from measured steps so the lr and momentum schedules end with the time; wins over epochs, min_steps and max_steps
    min_steps: int = 1000  # at least this many optimizer steps when the budget is in epochs, so a small folder or corpus trains long enough to learn (a line says when it applies); 0 = epochs alone
    learning_rate: float = 0.3  # base lr, scaled by global batch size (see lr_scaling)
    lr_scaling: Literal["linear", "sqrt", "none"] = "linear"  # lr = base * (global_batch / 256) [or sqrt]
    optimizer: Literal["lars", "adamw", "sgd"] = "lars"  # LARS (lightly's rule, no host syncs) for large-batch SimCLR, AdamW for MLM / small CPU runs
    weight_decay: float = 1e-6  # applied to weights only (not biases / norm parameters)
    warmup_fraction: float = 0.05  # fraction of steps spent in linear warm-up before the cosine decay
    gradient_accumulation_steps: int = 1  # micro-batches per optimizer step (global batch = batch_size x processes x this)
    augment: AugmentConfig = field(default_factory=AugmentConfig)  # vision methods' view augmentations
    mixed_precision: Optional[Literal["no", "bf16", "fp16", "auto"]] = None  # None: what `accelerate launch` says; auto: bf16 where the hardware computes in bf16 (a GPU with bf16, else fp16; a CPU with AMX or AVX-512 BF16), fp32 on CPUs that would only emulate it (bf16 there is ~10x slower than fp32; asked for outright, it is kept with a warning)
    channels_last: bool = True  # vision: NHWC memory format (faster convolutions on CPU and GPU), for pretraining, every fine-tune row and `embed`
    overlap_views: bool = True  # vision: make the next batch's augmented views in a background thread while the model trains on this one, in pretraining and every fine-tune row (the same views either way)
    compile: bool = False  # torch.compile the model (pays off on GPU for long runs)
    log_every: int = 10  # steps between metrics.jsonl rows
    log_with: list[Literal["tensorboard", "wandb", "mlflow"]] = field(default_factory=lambda: ["tensorboard"])  # trackers (Accelerate's) besides metrics.jsonl; wandb honours WANDB_MODE=offline, mlflow writes to OUTPUT_DIR/mlruns unless MLFLOW_TRACKING_URI is set
    eval_every: int = 200  # text: steps between held-out evaluations (MLM perplexity, ELECTRA detection accuracy)
    eval_every_passes: int = 10  # text: ... and at least every this many passes over a corpus so small that they are fewer steps (a line says when), so a memorising run's lowest held-out loss is not missed; 0 = eval_every alone
    monitor_every: int = 200  # steps between representation checks (embedding std, RankMe, kNN accuracy on a labeled train carve) and at the end; 0 = off
    monitor_samples: int = 1024  # examples in that fixed check set (labeled train examples when the data has labels)
    stop_on_collapse: bool = False  # stop with an error when the check finds the embeddings collapsed (else a warning line)
    restore_best: bool = True  # text: when the held-out loss ends 0.2 nats or more above its lowest of the run (the model memorised a small corpus), export the encoder of that lowest evaluation instead of the last
    early_stopping_patience: int = 3  # text: stop once the held-out loss has been 0.2 nats or more above its lowest for this many evaluations in a row (one every pretrain.eval_every steps, or pretrain.eval_every_passes passes); 0 = train to the end
    checkpoint_every: int = 500  # steps between checkpoints (one is always written at the end)
    keep_checkpoints: int = 2  # how many recent checkpoints to keep
    drop_last: bool = True  # drop the ragged last batch of each epoch (NT-Xent wants full batches)
    # + one section per method, `pretrain.<method>.<key>`, declared by the method itself (tasks/<method>.py)


def check_stream_budget(cfg: "Config", what: str) -> None:
    """A stream has no epoch length: its pretraining needs a step count or a time budget."""
    if cfg.pretrain.max_steps is None and cfg.pretrain.max_minutes is None:
        raise UserError(f"{what} needs pretrain.max_steps or pretrain.max_minutes (a stream has no epoch length)")


def pretrain_config_class() -> type:
    """PretrainConfig plus one field per registered method holding that method's own section (its dataclass).

    Built on first use, once every built-in method is registered; all methods' sections are present whichever
    `task` is chosen, so switching `task` on a config keeps the other sections at their values, unused."""
    global _PRETRAIN_CLASS
    if _PRETRAIN_CLASS is None:
        from .tasks.registry import config_sections

        sections = [(name, cls, field(default_factory=cls)) for name, cls in config_sections().items()]
        _PRETRAIN_CLASS = dataclasses.make_dataclass("PretrainConfig", sections, bases=(PretrainConfig,))
        _PRETRAIN_CLASS.__module__ = __name__
        _PRETRAIN_CLASS.__doc__ = PretrainConfig.__doc__
    return _PRETRAIN_CLASS


_PRETRAIN_CLASS: Optional[type] = None


def _resolve(t):
    """The schema class to use for an annotation: the pretrain section gains its method sub-sections."""
    return pretrain_config_class() if t is PretrainConfig else t


@dataclass
class FixMatchConfig:
    """The `fixmatch` row's own keys (finetune.fixmatch.*)."""

    threshold: float = 0.95  # a pool example teaches only when the model's confidence on its weak view is at least this
    unlabeled_ratio: int = 7  # mu: unlabeled examples per labeled example in a batch (the batch holds finetune.batch_size unlabeled ones)
    unlabeled_weight: float = 1.0  # lambda_u: weight of the pseudo-label loss on the strong views next to the labeled cross-entropy
    epochs: int = 8  # epochs over the unlabeled train pool (not capped by finetune.max_steps)
    encoder_lr_scale: float = 0.5  # encoder lr = finetune.learning_rate * this: higher than the finetune row's 0.1, as the pool's many examples keep the encoder from overfitting the few labels
    text_mask_probability: float = 0.15  # text: the strong view masks this fraction of the tokens, BERT-style (80 % [MASK], 10 % random, 10 % kept)
    thresholds: Literal["fixed", "flexmatch"] = "fixed"  # flexmatch: per-class thresholds, low for classes few pool examples are confidently given yet (FlexMatch, Zhang et al. 2021); needs an accurate starting model: +0.5 on Fashion-MNIST, -10 on Debian text (README)
    ema_decay: float = 0.0  # > 0: score an exponential moving average of the weights (FixMatch's paper: 0.999) instead of the last ones; 0 = off


@dataclass
class ClassicConfig:
    """The `classic` row's own keys (finetune.classic.*): the baseline a practitioner fits first."""

    text_features: Literal["words", "chars", "words+chars"] = "words+chars"  # text: TF-IDF of word 1-2-grams, of character 2-4-grams inside words, or both; words alone read a text written without spaces (Japanese, Chinese, Thai) as a few long tokens, and miss the shared stems of inflected words (README 'How it works')


@dataclass
class FinetuneConfig:
    encoder: Optional[str] = None  # exported encoder directory (default OUTPUT_DIR/encoder)
    checkpoints: Optional[list[str]] = None  # label efficiency vs pretraining step: several exported encoders, or [all] = every kept checkpoint of this run (exported to OUTPUT_DIR/checkpoint_encoders) + its final encoder; one grid each, then checkpoint_curve.{md,json,png}
    base_encoder: Optional[str] = None  # the starting checkpoint for the base_probe / base_finetune rows (default model.init_from): what you would use without the SSL stage
    label_fractions: Optional[list[float]] = None  # fractions of the train split's labels, e.g. [0.01, 0.1, 1.0]
    labels_per_class: Optional[list[int]] = None  # alternative to label_fractions
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])  # one subset draw + training run per seed
    methods: list[str] = field(default_factory=lambda: list(DEFAULT_METHODS))  # rows of the report; base_probe / base_finetune (the starting checkpoint without SSL) are added when a base encoder is set
    head: Literal["linear", "mlp"] = "linear"  # prediction head on the encoder
    head_init: Literal["probe", "random"] = "probe"  # finetune: start the linear head from the converged linear probe (LP-FT) or from random weights
    probe_c: float = 0.1  # linear probe: inverse L2 strength of the logistic regression on standardised embeddings
    epochs: int = 30  # epochs over the labeled subset (probe / finetune / supervised)
    min_steps: int = 100  # lower bound on optimizer steps, so tiny subsets still train
    max_steps: Optional[int] = None  # upper bound on optimizer steps per grid cell (CPU budgets)
    batch_size: int = 128  # per process, capped at the labeled subset's size
    learning_rate: float = 1e-3  # head lr (AdamW)
    encoder_lr_scale: list[float] = field(default_factory=lambda: [0.1])  # finetune: encoder lr = learning_rate * this; one value, or one per label budget (in label_fractions / labels_per_class order)
    weight_decay: float = 1e-4  # AdamW weight decay for heads and fine-tuned encoders
    knn_k: int = 20  # neighbours for the kNN method (cosine distance, distance-weighted vote)
    augment: bool = True  # finetune / supervised: weak augmentation of labeled images
    probe_batch_size: int = 512  # batch size for embedding extraction
    distill_temperature: float = 1.0  # distill: softmax temperature of the teacher's soft labels (and the student's)
    distill_label_weight: float = 1.0  # distill: weight of the cross-entropy on the labeled subset next to the soft-label loss
    distill_consistent: bool = True  # distill: with a train augmentation (vision), the teacher labels the student's own augmented view at every step (consistent teaching); false: soft labels once, on unaugmented examples (cheaper)
    distill_epochs: int = 2  # distill: epochs of the student over the unlabeled train pool (not capped by finetune.max_steps)
    distill_teacher: Literal["finetune", "fixmatch"] = "finetune"  # distill: the subset's teacher — the finetune row's model (SimCLRv2), or the fixmatch row's, which has already used the unlabeled pool (its finetune.fixmatch.* settings apply)
    student: Optional[str] = None  # distill_small: the smaller student: a timm name (vision) or a text size preset (tiny | mini | small ...), trained from scratch; or an exported encoder directory (e.g. a smaller encoder pretrained on the same data)
    quantize: Literal["none", "int8"] = "none"  # int8: each distill student also scored after int8 dynamic quantization (torch.ao), rows *_int8
    fixmatch: FixMatchConfig = field(default_factory=FixMatchConfig)
    classic: ClassicConfig = field(default_factory=ClassicConfig)
    checkpoint_every: int = 500  # fixmatch / distill: steps between checkpoints of a cell's passes over the unlabeled pool (minutes to hours per cell), so an interrupted grid resumes that cell mid-way; 0 = off
    log_with: list[Literal["tensorboard", "wandb", "mlflow"]] = field(default_factory=list)  # trackers for the grid: each cell's accuracy as it finishes, and the summary
    evaluate_on: Literal["test", "validation"] = "test"  # validation: score on a stratified carve of the train split (for tuning recipes without touching test; a test run in the same output_dir then headlines the SSL row this run ranked first)
    metric: Literal["accuracy", "balanced_accuracy"] = "accuracy"  # what the report scores: accuracy, or balanced_accuracy (mean recall over classes: for imbalanced data; recomputed from the rows' per-example results, nothing retrains)
    validation_fraction: float = 0.1  # size of that carve

    def label_budgets(self) -> list[tuple[str, float | int]]:
        """The requested label budgets as (kind, value); 1 %, 10 % and 100 % when none are given."""
        if self.labels_per_class:
            return [("labels_per_class", n) for n in self.labels_per_class]
        return [("label_fraction", f) for f in (self.label_fractions or [0.01, 0.1, 1.0])]


@dataclass
class Config:
    task: str = "simclr"  # pretext method: simclr, dcl, nnclr, byol, vicreg, dino (vision); mlm, electra (text); its keys are in pretrain.<task>
    threads: Optional[int] = None  # CPU threads per process; null: the cores given to the job / local processes, unless you set OMP_NUM_THREADS or --num_cpu_threads_per_process
    output_dir: str = "runs/default"  # run directory: checkpoints, metrics, encoder/, label_efficiency.*
    seed: int = 0  # seeds model init, data order and augmentation (CPU runs are reproducible; text: given the same tokenizer, see README Reliability)
    resume: Literal["auto", "never"] = "auto"  # auto: continue from the last checkpoint in output_dir
    overwrite: bool = False  # with resume=never: replace an existing run in output_dir
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    pretrain: PretrainConfig = field(default_factory=lambda: pretrain_config_class()())
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# ----------------------------------------------------------------------------------------------- parsing


def _all_keys(cls, prefix: str = "") -> list[str]:
    keys = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        t = _resolve(hints[f.name])
        if dataclasses.is_dataclass(t):
            keys.extend(_all_keys(t, f"{prefix}{f.name}."))
        else:
            keys.append(f"{prefix}{f.name}")
    return keys


# names other trainers use for a key (HF Trainer, Lightning, timm's train.py): spelling alone does not find them
# (`pretrain.lr` is closer to `pretrain.log_every` than to `pretrain.learning_rate`)
OTHER_NAMES = {"lr": "learning_rate", "learning_rates": "learning_rate", "wd": "weight_decay", "bs": "batch_size",
               "batch": "batch_size", "per_device_train_batch_size": "batch_size", "train_batch_size": "batch_size",
               "num_train_epochs": "epochs", "max_epochs": "epochs", "num_epochs": "epochs", "steps": "max_steps",
               "num_steps": "max_steps", "warmup_ratio": "warmup_fraction", "opt": "optimizer", "precision": "mixed_precision",
               "fp16": "mixed_precision", "bf16": "mixed_precision", "arch": "backbone", "model_name": "backbone",
               "img_size": "image_size", "input_size": "image_size", "temp": "temperature", "tau": "temperature"}


def _unknown_key(key: str) -> UserError:
    keys = _all_keys(Config)
    section, _, leaf = key.rpartition(".")
    leaf = OTHER_NAMES.get(leaf, leaf)
    if section:
        close = [f"{section}.{leaf}"] if f"{section}.{leaf}" in keys else []
    else:  # a bare `epochs=3`: every section that has it
        close = [k for k in keys if k.endswith("." + leaf)]
    close = close or difflib.get_close_matches(key, keys, n=1, cutoff=0.5)
    hint = f" (did you mean {' or '.join(repr(k) for k in close)}?)" if close else ""
    return UserError(f"unknown config key '{key}'{hint}")


def _type_name(t) -> str:
    return getattr(t, "__name__", None) or str(t).replace("typing.", "")


def _coerce(key: str, value: Any, t) -> Any:
    """Check `value` against the annotation `t`; ints are accepted for floats."""
    origin = typing.get_origin(t)
    args = typing.get_args(t)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        lists = [a for a in inner if typing.get_origin(a) is list]
        if isinstance(value, (list, tuple)) and lists:  # `str | list[str]`: a list where one is given
            return _coerce(key, value, lists[0])
        return _coerce(key, value, next((a for a in inner if a not in lists), inner[0]))
    if origin is Literal:
        if isinstance(value, bool):  # YAML 1.1 reads `no`/`off`/`yes`/`on` as booleans: map back to what was typed
            spelled = [w for w in (("no", "off", "false") if not value else ("yes", "on", "true")) if w in args]
            value = spelled[0] if spelled else value
        if value not in args:
            raise UserError(f"config key '{key}' must be one of {list(args)}, got {value!r}")
        return value
    if origin is list:
        if not isinstance(value, (list, tuple)):
            value = [value]
        return [_coerce(key, v, args[0]) for v in value]
    if t is float:
        if isinstance(value, str):  # YAML 1.1 reads "1e-3" as a string
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UserError(f"config key '{key}' must be a number, got {value!r}")
        return float(value)
    if t is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise UserError(f"config key '{key}' must be an integer, got {value!r}")
        return value
    if t is bool:
        if not isinstance(value, bool):
            raise UserError(f"config key '{key}' must be true or false, got {value!r}")
        return value
    if t is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise UserError(f"config key '{key}' must be a string, got {value!r}")
        return str(value)
    raise UserError(f"config key '{key}' has unsupported type {_type_name(t)}")


def _build(cls, values: dict, prefix: str = ""):
    if not isinstance(values, dict):
        raise UserError(f"config key '{prefix.rstrip('.')}' must be a mapping, got {values!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for key in values:
        if key not in names:
            raise _unknown_key(f"{prefix}{key}")
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in values:
            continue
        t, v, key = _resolve(hints[f.name]), values[f.name], f"{prefix}{f.name}"
        kwargs[f.name] = _build(t, v, f"{key}.") if dataclasses.is_dataclass(t) else _coerce(key, v, t)
    return cls(**kwargs)


def _set_dotted(tree: dict, dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = tree
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise _unknown_key(dotted)
        node = child
    node[parts[-1]] = value


def parse_overrides(overrides: list[str]) -> list[tuple[str, Any]]:
    pairs = []
    for item in overrides:
        if "=" not in item:
            raise UserError(f"override '{item}' must look like key=value")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError:
            value = raw
        pairs.append((key.strip(), value))
    return pairs


PROJECT_ROOT = Path(__file__).resolve().parents[1]


def resolve_config_path(path: str | Path) -> Path:
    """The config file as given, or else the same relative path in the project checkout, so the README's
    `--config configs/...` works from any directory once the project is installed (editable, as `make setup`)."""
    p = Path(path).expanduser()
    if p.is_file():
        return p
    shipped = PROJECT_ROOT / p
    if not p.is_absolute() and shipped.is_file():
        return shipped
    raise UserError(f"config file not found: {p}")


# keys that moved into a method's own section: old configs and command lines keep working
LEGACY_KEYS = {
    "pretrain.temperature": "pretrain.simclr.temperature",
    "pretrain.mask_probability": "pretrain.mlm.mask_probability",
    "model.projection_hidden_dim": "pretrain.simclr.projection_hidden_dim",
    "model.projection_dim": "pretrain.simclr.projection_dim",
}


def migrate_legacy_keys(tree: dict) -> dict:
    """Moves keys from their old place to their method's section (a nested dict, modified in place)."""
    for old, new in LEGACY_KEYS.items():
        *old_parents, old_leaf = old.split(".")
        node = tree
        for part in old_parents:
            node = node.get(part) if isinstance(node, dict) else None
        if not isinstance(node, dict) or old_leaf not in node:
            continue
        value = node.pop(old_leaf)
        if new in flatten(tree):
            raise UserError(f"config sets both '{old}' and '{new}': '{old}' is the old name of '{new}'; keep one")
        _set_dotted(tree, new, value)
    return tree


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> Config:
    """Read a YAML config, apply `key=value` overrides and validate everything against the schema."""
    tree: dict = {}
    if path is not None:
        p = resolve_config_path(path)
        try:
            tree = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            where = f" line {mark.line + 1}" if mark else ""
            raise UserError(f"config file {p} is not valid YAML{where}") from None
        if not isinstance(tree, dict):
            raise UserError(f"config file {p} must hold a mapping of keys")
    migrate_legacy_keys(tree)
    for key, value in parse_overrides(overrides or []):
        _set_dotted(tree, LEGACY_KEYS.get(key, key), value)
    cfg = _build(Config, tree)
    from .data.files import is_saved_dataset, is_table_folder

    if cfg.data.source in ("auto", "folder") and cfg.data.root and not cfg.data.files and (
            is_saved_dataset(cfg.data.root) or is_table_folder(cfg.data.root)):
        # a starting config pointed at what `save_to_disk` wrote, or at a downloaded hub dataset (README.md +
        # data/*.parquet): read it as the HF dataset it is, not as a folder of files
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, source="hf", name=cfg.data.root))
    if cfg.data.source == "folder" and cfg.data.files:  # the image-folder starting config given a table of image
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, source="hf"))  # paths (a folder reads none)
    if cfg.data.source == "auto":
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, source=source_from_suffix(cfg.data)))
    object.__setattr__(cfg, "explicit_keys", frozenset(flatten(tree)))  # what the user set (not a schema key)
    validate(cfg)
    return cfg


def _folder_source(folder: str) -> str:
    """The format of a folder named in data.files (every file below it is read): that of its tables when they are of
    one format; else a one-line error offering a glob or data.root. It was "cannot tell the format of FOLDER from its
    suffix". Plain-text files alone are not guessed: one text per line (data.files) or one per file (data.root)."""
    from .data.files import expand_files, source_of

    files = [f for f in expand_files([folder]) if not any(part.startswith(".") for part in Path(f).parts)]
    suffix = {"csv": "csv", "jsonl": "jsonl", "parquet": "parquet", "excel": "xlsx", "text": "txt"}
    kinds = sorted({source_of(f, default="") or Path(f).suffix.lower() or "no suffix" for f in files},
                   key=lambda k: (k not in suffix, k))  # formats read first, then the other suffixes
    if len(kinds) == 1 and kinds[0] in ("csv", "jsonl", "parquet", "excel"):
        return kinds[0]
    table = next((k for k in kinds if k in suffix), None)
    what = "one text per line of its .txt files" if table == "text" else f"its {table} tables"
    glob = f"data.files=[{folder.rstrip('/')}/*.{suffix[table]}] to read {what}, or " if table else ""
    raise UserError(f"data.files names a folder, {folder}, holding {len(files):,} files of "
                    f"{'several kinds' if len(kinds) > 1 else 'one kind'} ({', '.join(kinds[:6])}): set {glob}"
                    f"data.root={folder} (and no data.files) to read it as a folder of documents, one text per file")


def source_from_suffix(data: DataConfig) -> str:
    """data.source=auto: the file format every pattern of data.files names by its suffix (`*.csv` too), so one
    starting config reads .csv, .tsv, .jsonl/.json, .parquet and .txt files as they are."""
    from .data.files import source_of
    from .data.folders import ARCHIVES, folder_root

    if not data.files and data.root:
        root = Path(data.root).expanduser()
        if root.is_dir() or (not root.exists() and not root.suffix):
            return "folder"  # a folder of documents (or images): its files, classes and splits (data/folders.py)
    patterns = list(data.files or ([data.root] if data.root else []))
    if not patterns:
        raise UserError("data.source=auto reads the format from the suffix of data.files, and none are given: "
                        "set data.files=[...], data.root=FOLDER (a folder of documents) or data.source")
    found = {p: _folder_source(p) if Path(p).expanduser().is_dir() else source_of(p, default="") for p in patterns}
    unknown = [p for p, s in found.items() if not s]
    if unknown and not data.files and unknown[0].lower().endswith(ARCHIVES):
        folder_root(data.root, "documents")  # an archive (`docs.zip`) is named as one
    if unknown:
        sheet = Path(unknown[0]).suffix.lower() in (".xls", ".ods", ".numbers")  # other spreadsheets: one step away
        raise UserError(f"data.source=auto cannot tell the format of {unknown[0]} from its suffix: "
                        + ("save the sheet as .xlsx or .csv" if sheet else
                           "set data.source to one of text, jsonl, csv, parquet, excel"))
    kinds = sorted(set(found.values()))
    if len(kinds) > 1:
        raise UserError(f"data.files mix formats ({', '.join(kinds)}): data.source=auto needs one; convert them to "
                        "one format")
    return kinds[0]


def flatten(tree: dict, sep: str = ".", prefix: str = "") -> dict:
    """{"a": {"b": 1}} -> {"a.b": 1}: nested config sections as dotted keys (or `sep`-joined, for trackers)."""
    out = {}
    for k, v in tree.items():
        out.update(flatten(v, sep, f"{prefix}{k}{sep}") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def explicit(cfg: Config, key: str) -> bool:
    """Whether `key` was set in the YAML file or on the command line (not left at its default)."""
    return key in getattr(cfg, "explicit_keys", frozenset())


def base_encoder_ref(cfg: Config) -> Optional[str]:
    """The checkpoint the base_* rows evaluate: finetune.base_encoder, else model.init_from."""
    return cfg.finetune.base_encoder or cfg.model.init_from





def validate(cfg: Config) -> None:
    """Cross-field checks that types alone cannot express."""
    if cfg.data.dedupe and not cfg.data.leakage_check:
        raise UserError("data.dedupe=true needs data.leakage_check=true (duplicates must be found to be dropped)")
    own = [k for k in ("test_files", "validation_files") if getattr(cfg.data, k)]
    if own and cfg.data.source not in TEXT_ONLY_SOURCES + ("hf",):  # they were silently ignored: a carve scored instead
        where = {"folder": "a test/ (val/) folder beside train/", "webdataset": "its test-* shards"}.get(
            cfg.data.source, "the source itself (its own split, or a carve)")
        raise UserError(f"data.{own[0]} is read by file sources (csv, jsonl, parquet, excel, text; hf with data.files), not "
                        f"by data.source={cfg.data.source}, whose {own[0].split('_')[0]} split comes from {where}")
    if cfg.data.sheet is not None and cfg.data.source not in ("excel", "hf"):  # else silently ignored
        raise UserError(f"data.sheet chooses a sheet of an Excel workbook (.xlsx), not of data.source="
                        f"{cfg.data.source}")
    if cfg.pretrain.monitor_every < 0:
        raise UserError(f"config key 'pretrain.monitor_every' must be >= 0 (0 = off), got {cfg.pretrain.monitor_every}")
    if cfg.pretrain.eval_every_passes < 0:
        raise UserError("config key 'pretrain.eval_every_passes' must be >= 0 (0 = pretrain.eval_every alone), "
                        f"got {cfg.pretrain.eval_every_passes}")
    if cfg.pretrain.early_stopping_patience < 0:
        raise UserError("config key 'pretrain.early_stopping_patience' must be >= 0 (0 = train to the end), "
                        f"got {cfg.pretrain.early_stopping_patience}")
    if cfg.pretrain.min_steps < 0:
        raise UserError(f"config key 'pretrain.min_steps' must be >= 0 (0 = epochs alone), got {cfg.pretrain.min_steps}")
    positive = {
        "pretrain.batch_size": cfg.pretrain.batch_size,
        "pretrain.epochs": cfg.pretrain.epochs,
        "pretrain.learning_rate": cfg.pretrain.learning_rate,
        "pretrain.gradient_accumulation_steps": cfg.pretrain.gradient_accumulation_steps,
        "pretrain.log_every": cfg.pretrain.log_every,
        "pretrain.monitor_samples": cfg.pretrain.monitor_samples,
        "pretrain.checkpoint_every": cfg.pretrain.checkpoint_every,
        "pretrain.keep_checkpoints": cfg.pretrain.keep_checkpoints,
        "data.image_size": cfg.data.image_size,
        "data.num_samples": cfg.data.num_samples,
        "data.max_length": cfg.data.max_length,
        "data.shuffle_buffer": cfg.data.shuffle_buffer,
        "finetune.epochs": cfg.finetune.epochs,
        "finetune.batch_size": cfg.finetune.batch_size,
        "finetune.learning_rate": cfg.finetune.learning_rate,
        "finetune.knn_k": cfg.finetune.knn_k,
        "finetune.probe_c": cfg.finetune.probe_c,
    }
    for key, value in positive.items():
        if value <= 0:
            raise UserError(f"config key '{key}' must be positive, got {value}")
    if cfg.threads is not None and cfg.threads <= 0:
        raise UserError(f"config key 'threads' must be positive, got {cfg.threads}")
    if cfg.pretrain.max_steps is not None and cfg.pretrain.max_steps <= 0:
        raise UserError(f"config key 'pretrain.max_steps' must be positive, got {cfg.pretrain.max_steps}")
    if cfg.pretrain.max_minutes is not None and not 0 < cfg.pretrain.max_minutes < math.inf:
        raise UserError(f"config key 'pretrain.max_minutes' must be a positive number of minutes, got {cfg.pretrain.max_minutes}")
    _check_task_fits_source(cfg)
    if cfg.data.channels not in (1, 3):
        raise UserError(f"config key 'data.channels' must be 1 or 3, got {cfg.data.channels}")
    names = cfg.data.csv_columns
    if names is not None and (not names or len(set(names)) < len(names) or not all(str(n).strip() for n in names)):
        raise UserError(f"config key 'data.csv_columns' must name each column of the file once, in order, e.g. "
                        f"[label,title,text]; got {names}")
    if cfg.data.csv_delimiter not in ("auto", "tab") and len(cfg.data.csv_delimiter) != 1:
        raise UserError(f"config key 'data.csv_delimiter' must be 'auto', 'tab' or one character, got {cfg.data.csv_delimiter!r}")
    try:
        codecs.lookup(cfg.data.encoding)
    except LookupError:
        raise UserError(f"config key 'data.encoding' names no known encoding: {cfg.data.encoding!r} "
                        "(e.g. utf-8, cp1252, latin-1)") from None
    if not 0.0 < cfg.data.test_fraction < 1.0:
        raise UserError(f"config key 'data.test_fraction' must be in (0, 1), got {cfg.data.test_fraction}")
    if not 0.0 < cfg.pretrain.augment.crop_scale_min <= 1.0:
        raise UserError(f"config key 'pretrain.augment.crop_scale_min' must be in (0, 1], got {cfg.pretrain.augment.crop_scale_min}")
    for frac in cfg.finetune.label_fractions or []:
        if not 0.0 < frac <= 1.0:
            raise UserError(f"config key 'finetune.label_fractions' has {frac}: fractions must be in (0, 1]")
    for n in cfg.finetune.labels_per_class or []:
        if n < 1:
            raise UserError(f"config key 'finetune.labels_per_class' has {n}: need at least one label per class")
    if cfg.finetune.label_fractions and cfg.finetune.labels_per_class:
        raise UserError("set only one of 'finetune.label_fractions' and 'finetune.labels_per_class'")
    budgets = len(cfg.finetune.label_budgets())
    if len(cfg.finetune.encoder_lr_scale) not in (1, budgets):
        raise UserError(f"config key 'finetune.encoder_lr_scale' has {len(cfg.finetune.encoder_lr_scale)} values: give "
                        f"one, or one per label budget ({budgets})")
    if any(s < 0 for s in cfg.finetune.encoder_lr_scale):
        raise UserError("config key 'finetune.encoder_lr_scale' must be >= 0")
    known_methods = set(REQUESTABLE)
    for m in cfg.finetune.methods:
        if m in ORDER and m not in known_methods:
            raise UserError(f"config key 'finetune.methods': '{m}' is written by its float row; request "
                            f"'{m.removesuffix('_int8')}' with finetune.quantize=int8")
        if m not in known_methods:
            close = difflib.get_close_matches(m, sorted(known_methods), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise UserError(f"config key 'finetune.methods' has unknown method '{m}'{hint}")
    if "distill_small" in cfg.finetune.methods and not cfg.finetune.student:
        raise UserError("finetune.methods distill_small needs finetune.student (a timm name, a text size preset, or an "
                        "exported encoder directory)")
    if cfg.finetune.distill_temperature <= 0 or cfg.finetune.distill_epochs < 1 or cfg.finetune.distill_label_weight < 0:
        raise UserError("config keys 'finetune.distill_temperature' (> 0), 'finetune.distill_epochs' (>= 1) and "
                        "'finetune.distill_label_weight' (>= 0) are out of range")
    if cfg.finetune.checkpoint_every < 0:
        raise UserError(f"config key 'finetune.checkpoint_every' must be >= 0 (0 = off), got {cfg.finetune.checkpoint_every}")
    fm = cfg.finetune.fixmatch
    if (not 0.0 <= fm.threshold <= 1.0 or fm.unlabeled_ratio < 1 or fm.encoder_lr_scale < 0 or fm.unlabeled_weight < 0
            or fm.epochs < 1 or not 0.0 <= fm.text_mask_probability < 1.0 or not 0.0 <= fm.ema_decay < 1.0):
        raise UserError("config keys 'finetune.fixmatch.threshold' (in [0, 1]), 'finetune.fixmatch.unlabeled_ratio' "
                        "(>= 1), 'finetune.fixmatch.unlabeled_weight' (>= 0), 'finetune.fixmatch.epochs' (>= 1), "
                        "'finetune.fixmatch.encoder_lr_scale' (>= 0), 'finetune.fixmatch.text_mask_probability' (in "
                        "[0, 1)) and 'finetune.fixmatch.ema_decay' (in [0, 1)) are out of range")
    if any(m in BASE_METHODS for m in cfg.finetune.methods) and not base_encoder_ref(cfg):
        raise UserError("finetune.methods base_probe / base_finetune need a starting checkpoint: set "
                        "finetune.base_encoder or model.init_from")
    if not 0.0 < cfg.finetune.validation_fraction < 1.0:
        raise UserError(f"config key 'finetune.validation_fraction' must be in (0, 1), got {cfg.finetune.validation_fraction}")
    if not cfg.finetune.seeds:
        raise UserError("config key 'finetune.seeds' must list at least one seed")


TEXT_ONLY_SOURCES = ("text", "jsonl", "csv", "parquet", "excel")
VISION_ONLY_SOURCES = ("torchvision",)  # folder: images for a vision method, documents for a text one
TASK_FOR_MODALITY = {"vision": "simclr", "text": "mlm"}  # the method suggested for each kind of data


def _check_task_fits_source(cfg: Config) -> None:
    """A text file with a vision task (or the reverse) is a common first mistake: name the fix."""
    from .tasks import available, modality_of

    if cfg.task not in available():
        raise UserError(f"config key 'task' must be one of {available()}, got {cfg.task!r}")
    modality = modality_of(cfg.task)
    src = cfg.data.source
    other = "text" if src in TEXT_ONLY_SOURCES else "vision" if src in VISION_ONLY_SOURCES else None
    if other and other != modality:
        raise UserError(f"data.source={src} gives {other} data but task={cfg.task} is a {modality} method: "
                        f"set task={TASK_FOR_MODALITY[other]}")


def _field_comments(cls) -> dict[str, str]:
    """The `# comment` after each field in the class source: the schema's documentation lives next to it."""
    import inspect
    import re

    out = {}
    for klass in reversed([k for k in cls.__mro__ if dataclasses.is_dataclass(k)]):
        try:
            source = inspect.getsource(klass)
        except (OSError, TypeError):  # the generated PretrainConfig: its own fields are sections, not keys
            continue
        for line in source.splitlines():
            m = re.match(r"\s+(\w+): .*?#\s*(.*)$", line)
            if m:
                out[m.group(1)] = m.group(2).strip()
    return out


def _type_label(t) -> str:
    origin, args = typing.get_origin(t), typing.get_args(t)
    if origin is Literal:
        return " \\| ".join(repr(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        return " or ".join([_type_label(a) for a in inner] + (["null"] if len(inner) < len(args) else []))
    if origin is list:
        return f"list[{_type_label(args[0])}]"
    return _type_name(t)


MAIN_KEYS = ("task", "output_dir", "seed", "threads", "data.source", "data.name", "data.root", "data.files",
             "data.test_files", "data.validation_files", "data.text_column", "data.label_column", "data.image_size",
             "data.channels", "model.backbone", "model.size", "pretrain.epochs", "pretrain.max_steps", "pretrain.max_minutes",
             "pretrain.batch_size", "pretrain.learning_rate", "pretrain.mixed_precision", "finetune.encoder",
             "finetune.label_fractions", "finetune.seeds", "finetune.methods", "finetune.evaluate_on")


def _schema_rows():
    """(key, type label, default, meaning) for every key, in schema order."""
    rows = []

    def walk(cls, obj, prefix):
        hints, notes = typing.get_type_hints(cls), _field_comments(cls)
        for f in dataclasses.fields(cls):
            t, v = _resolve(hints[f.name]), getattr(obj, f.name)
            if dataclasses.is_dataclass(t):
                walk(t, v, f"{prefix}{f.name}.")
            else:
                rows.append((f"{prefix}{f.name}", _type_label(t), v, notes.get(f.name, "")))

    walk(Config, Config(), "")
    return rows


DATA_SOURCES = {
    "folder": "images (vision) or text documents, one per file (text), under data.root; class = first sub-folder; train/ val|validation/ test/ unlabeled/ sub-folders are splits; no sub-folders = unlabeled",
    "text": "one document per line in data.files (unlabeled)",
    "jsonl / csv / parquet / excel": "data.text_column (+ data.label_column, ints or strings) in data.files; data.test_files / data.validation_files",
    "auto": "text / jsonl / csv / parquet / excel, whichever the suffix of data.files names (.txt, .jsonl/.json, .csv/.tsv, .parquet, .xlsx; all but .xlsx also under .gz/.bz2/.xz); folder when data.root is a directory",
    "hf": "a Hugging Face dataset name or a local directory of train/test files (data.image_column or data.text_column)",
    "torchvision": "data.name (FashionMNIST, CIFAR10, STL10, ...) under data.root",
    "embedded": "offline demo data: scikit-learn digits (vision) or Python stdlib docstrings (text)",
    "synthetic": "random data for benchmarks",
}


def help_text() -> str:
    """The `--help` epilog: the main keys and the data sources, generated from the schema like the README table."""
    import textwrap

    rows = {key: (default, note) for key, _, default, note in _schema_rows()}
    lines = ["main keys (key=value; every key: README 'Configuration' or `python -m ssl_pipeline.config`):"]
    for key in MAIN_KEYS:
        default, note = rows[key]
        text = f"{key} (default {default!r}): {note}"
        lines += textwrap.wrap(text, width=110, initial_indent="  ", subsequent_indent="      ")
    lines += ["", "data sources (data.source=...):"]
    for name, what in DATA_SOURCES.items():
        lines += textwrap.wrap(f"{name}: {what}", width=110, initial_indent="  ", subsequent_indent="      ")
    return "\n".join(lines)


def describe_schema() -> str:
    """Markdown table of every key with its type, default and meaning (the README embeds it verbatim)."""
    rows = ["| key | type | default | meaning |", "| --- | --- | --- | --- |"]
    for key, label, default, note in _schema_rows():
        rows.append(f"| `{key}` | {label} | `{default!r}` | {note.replace('|', chr(92) + '|')} |")
    return "\n".join(rows)


if __name__ == "__main__":  # `python -m ssl_pipeline.config` prints the table the README embeds
    print(describe_schema())
