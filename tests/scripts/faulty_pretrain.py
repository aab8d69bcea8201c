"""`pretrain` with an injected fault, for the reliability tests: python faulty_pretrain.py RANK:STEP[:nan] ARGS...

RANK:STEP raises on that process at that step; RANK:STEP:nan makes its loss NaN there. The fault is a step hook
passed to the real entry point, so the engine carries no test code."""
import os
import sys

import torch

from ssl_pipeline.cli import pretrain_main


def fault(spec: str):
    rank, at, *kind = spec.split(":")

    def hook(step, loss, accelerator):
        if int(rank) != accelerator.process_index or int(at) != step:
            return loss
        if kind == ["nan"]:
            return torch.full_like(loss, float("nan"))
        raise RuntimeError(f"injected fault on rank {rank} at step {step}")

    return hook


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    pretrain_main(sys.argv[2:], step_hooks=(fault(sys.argv[1]),))
