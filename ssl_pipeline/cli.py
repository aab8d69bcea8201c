"""Command-line entry points shared by `python -m pretrain` / `accelerate launch pretrain` (and finetune)."""
from __future__ import annotations

import argparse
import os
import sys
import warnings

from .errors import exit_on_user_error


def _quiet() -> None:
    """Keep the console for progress bars and real problems: silence known-benign library chatter."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")  # our own bars show training progress
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    # transformers' load reports (the MLM head is "unexpected" when loading the bare encoder) and long-input
    # notices (texts are packed, never fed whole) are expected here, not problems
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    warnings.filterwarnings("ignore", category=UserWarning, module="torch.utils.data")
    warnings.filterwarnings("ignore", message=".*TypedStorage is deprecated.*")
    warnings.filterwarnings("ignore", category=FutureWarning)
    # a few labels per class is what the grid is for (1 % of 2,199 texts: 21 labels of 12 classes), not the
    # "regression problem" scikit-learn guesses from it, once per probe and kNN fit, between the progress lines
    warnings.filterwarnings("ignore", message="The number of unique classes is greater than 50%", category=UserWarning)
    if "datasets" in sys.modules:  # imported before us (e.g. in-process callers): the env var came too late
        sys.modules["datasets"].disable_progress_bars()


DESCRIPTIONS = {
    "pretrain": "Self-supervised pretraining on unlabeled data; exports OUTPUT_DIR/encoder.",
    "finetune": "Label-efficiency grid on the pretrained encoder; writes OUTPUT_DIR/label_efficiency.{md,json,csv,png}.",
    "embed": "Embeddings of every example with an exported encoder, written to out=FILE (.parquet or .npy).",
}


class _KeyTableParser(argparse.ArgumentParser):
    """Help ends with the table of config keys. It imports every method module (timm, transformers), so it is built
    when help is printed, however asked for (-h, --help, an abbreviation), not on every start."""

    def format_help(self) -> str:
        from .config import help_text

        self.epilog = help_text()
        return super().format_help()


def _parse(prog: str, argv):
    parser = _KeyTableParser(prog=prog, description=f"ssl_pipeline {prog}: {DESCRIPTIONS[prog]}",
                             formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="YAML config file (a path, or a shipped one such as configs/vision/simclr_digits.yaml)")
    parser.add_argument("overrides", nargs="*", help="key=value overrides, e.g. pretrain.epochs=5")
    return parser.parse_args(argv)


@exit_on_user_error
def pretrain_main(argv=None, step_hooks: tuple = ()) -> None:
    """`step_hooks`: see engine.train (tests use them to inject faults into real runs)."""
    _quiet()
    from .config import load_config

    args = _parse("pretrain", argv)
    cfg = load_config(args.config, args.overrides)
    from .pretrain import run_pretrain

    run_pretrain(cfg, step_hooks)


@exit_on_user_error
def finetune_main(argv=None) -> None:
    _quiet()
    from .config import load_config

    args = _parse("finetune", argv)
    cfg = load_config(args.config, args.overrides)
    if cfg.finetune.checkpoints:
        from .finetune.checkpoint_curve import run_checkpoint_curve

        run_checkpoint_curve(cfg)
        return
    from .finetune.runner import run_finetune

    run_finetune(cfg)


@exit_on_user_error
def embed_main(argv=None) -> None:
    """`python -m ssl_pipeline.embed --config C [key=value ...] out=FILE` (also `ssl-embed`)."""
    _quiet()
    from pathlib import Path

    from .config import load_config
    from .errors import UserError

    args = _parse("embed", argv)
    outs = [o.split("=", 1)[1] for o in args.overrides if o.startswith("out=")]
    if not outs or not outs[-1]:
        raise UserError("embed needs out=FILE (.parquet, or .npy for an array plus FILE.index.csv)")
    cfg = load_config(args.config, [o for o in args.overrides if not o.startswith("out=")])
    from .embed import run_embed

    run_embed(cfg, Path(outs[-1]))
