"""Shared helpers: run the real CLIs (one process, or two via `accelerate launch --multi_gpu`, gloo on CPU)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

ROOT = Path(__file__).resolve().parents[1]


# a 32-wide one-layer text encoder on 32-token blocks: tests of what a grid does, not of what MLM learns
SMALL_TEXT_MODEL = ["model.hidden_size=32", "model.intermediate_size=64", "model.num_layers=1", "data.max_length=32"]


def cli_env() -> dict:
    env = dict(os.environ)
    env.update({"OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1",
                "HF_DATASETS_OFFLINE": "1", "PYTHONWARNINGS": "ignore", "CUDA_VISIBLE_DEVICES": ""})
    return env


def as_foreground_job() -> None:
    """Popen preexec_fn: SIGINT as a terminal's foreground job gets it. A job started in the background of a
    non-interactive shell (nohup, `cmd &`) inherits SIGINT ignored, and Python then never raises Ctrl-C."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_args(nproc: int) -> list[str]:
    if nproc == 1:
        return [sys.executable, "-m"]
    return [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(nproc),
            "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port",
            str(free_port()), "-m"]


def _run(cmd: list[str], timeout: int, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=ROOT, env=cli_env(), capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc


def run_stage(stage: str, args: list[str], nproc: int = 1, timeout: int = 600, check: bool = True):
    return _run(launch_args(nproc) + [stage] + args, timeout, check)


STAGE_RUN_MARK = "=== stage_runs.py: "  # begins the line stage_runs.py prints before each run


def run_stages(runs: list[list[str]], workdir: Path, nproc: int = 2, timeout: int = 900) -> list[str]:
    """Several runs in one launch (tests/scripts/stage_runs.py), each ["pretrain" | "finetune", *ARGS] as
    `-m STAGE ARGS` would run it, the processes' start-up (imports, process group) paid once. For tests of what
    each run does, not of how a process starts or ends. Returns each run's part of the output (stdout)."""
    listing = Path(workdir) / "runs.json"
    listing.write_text(json.dumps(runs))
    proc = _run(launch_args(nproc)[:-1] + [str(ROOT / "tests/scripts/stage_runs.py"), str(listing), STAGE_RUN_MARK],
                timeout)
    return proc.stdout.split(STAGE_RUN_MARK)[1:]


def one_line_error(main, args: list[str], capsys, needle: str) -> str:
    """A CLI main called in-process fails as a user sees it: exit code 2 and one `error: ...` line on stderr that
    names the problem (`needle`); no traceback. Returns the line."""
    with pytest.raises(SystemExit) as exc:
        main(args)
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2 and len(err) == 1 and err[0].startswith("error: "), err
    assert needle in err[0], err[0]
    return err[0]


def faulty_pretrain_args(nproc: int, spec: str) -> list[str]:
    """The real pretrain entry point with a fault hook (tests/scripts/faulty_pretrain.py), 1 or 2 processes; the
    pretrain arguments follow."""
    return launch_args(nproc)[:-1] + [str(ROOT / "tests" / "scripts" / "faulty_pretrain.py"), spec]


def injected_fault(spec: str):
    """The step hook of tests/scripts/faulty_pretrain.py (RANK:STEP[:nan]), for runs made in-process."""
    import importlib.util

    found = importlib.util.spec_from_file_location("faulty_pretrain", ROOT / "tests" / "scripts" / "faulty_pretrain.py")
    module = importlib.util.module_from_spec(found)
    found.loader.exec_module(module)
    return module.fault(spec)


def crash_then_resume(args: list[str], tmp_path: Path) -> tuple[Path, Path]:
    """-> (run dir of an uninterrupted run, run dir of the same run crashed at step 5 after a checkpoint at step 3,
    then resumed): for tests that a method's own state survives a resume. `args` must checkpoint every 3 steps.
    All three runs in-process (1 thread, as the CLI runs): the resume rebuilds everything from the checkpoint; a
    resume in a new process after kill -9 or SIGTERM is test_reliability.py's."""
    from ssl_pipeline.cli import pretrain_main

    full, crashed = tmp_path / "full", tmp_path / "crashed"
    pretrain_main(args + [f"output_dir={full}", "threads=1"])
    with pytest.raises(RuntimeError, match="injected fault on rank 0 at step 5"):
        pretrain_main(args + [f"output_dir={crashed}", "threads=1"], step_hooks=(injected_fault("0:5"),))
    assert (crashed / "checkpoints" / "step_0000003").is_dir()
    pretrain_main(args + [f"output_dir={crashed}", "threads=1"])
    return full, crashed


class OneProcess:
    """The few accelerator members a task uses when built directly in a test: one process on the CPU."""

    num_processes, process_index, device = 1, 0, "cpu"
    print = staticmethod(print)  # tasks log their data checks through it

    @staticmethod
    def main_process_first():
        import contextlib

        return contextlib.nullcontext()


def read_metrics(output_dir: Path, every_row: bool = False) -> list[dict]:
    """The training log rows of metrics.jsonl (those with a loss); `every_row`: also the representation-check and
    evaluation rows."""
    rows = [json.loads(line) for line in (output_dir / "metrics.jsonl").read_text().splitlines()]
    return rows if every_row else [r for r in rows if "loss" in r]


@pytest.fixture(scope="session")
def ROOT_DIR() -> Path:
    return ROOT



class CountHostReads(TorchDispatchMode):
    """Counts, inside a `with`, the aten ops through which `.item()`, `bool(tensor)` and boolean-mask indexing read a
    tensor back to the host (`_local_scalar_dense`; `nonzero` for a data-dependent shape): on a GPU each one makes
    the CPU wait for every queued kernel. On CPU they cost nothing, so the count itself is what tests check."""

    def __init__(self):
        super().__init__()
        self.scalars = self.nonzeros = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten._local_scalar_dense.default:
            self.scalars += 1
        elif func is torch.ops.aten.nonzero.default:
            self.nonzeros += 1
        return func(*args, **(kwargs or {}))
