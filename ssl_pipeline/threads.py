"""CPU threads per process: use the cores the job was given, unless the user chose a count.

`accelerate launch` always sets OMP_NUM_THREADS in its workers, to 1 unless told otherwise, so on a CPU machine
the README's own commands would use one core of many. Inside a worker that default cannot be told apart from a
user's explicit 1 by the environment alone, so the launcher's own environment and arguments (its /proc entry,
Linux) say whether the user set a count. No library does this: Accelerate's own CPU heuristic only runs with
`--cpu` and counts physical cores of the whole machine, not the job's CPU set.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

LAUNCHER_MARKER = "ACCELERATE_DYNAMO_BACKEND"  # set by `accelerate launch` in every worker it starts


def _proc_file(pid: int, name: str) -> list[str]:
    try:
        return Path(f"/proc/{pid}/{name}").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def user_chose_threads(env=os.environ, parent_pid: Optional[int] = None) -> bool:
    """True when OMP_NUM_THREADS reflects a choice of the user rather than `accelerate launch`'s default of 1."""
    if "OMP_NUM_THREADS" not in env:
        return False
    if LAUNCHER_MARKER not in env:
        return True  # plain `python -m pretrain`: whoever started us set it
    pid = os.getppid() if parent_pid is None else parent_pid
    parent_env, parent_args = _proc_file(pid, "environ"), _proc_file(pid, "cmdline")
    if not parent_env and not parent_args:
        return True  # cannot tell (not Linux): respect the value
    return (any(e.startswith("OMP_NUM_THREADS=") for e in parent_env)
            or any(a.startswith("--num_cpu_threads_per_process") for a in parent_args))


def job_cores() -> int:
    """Cores this process may run on (CPU affinity: cgroups/SLURM cpusets), not the machine's total."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def local_processes(env=os.environ) -> int:
    return max(int(env.get("LOCAL_WORLD_SIZE", "1") or 1), 1)


def configure_threads(requested: Optional[int]) -> tuple[int, str]:
    """Sets torch's intra-op threads; returns (threads, why) for the start-up line."""
    import torch

    if requested is not None:
        n, why = requested, "threads"
    elif user_chose_threads():
        n, why = max(int(os.environ["OMP_NUM_THREADS"]), 1), "OMP_NUM_THREADS"
    else:
        procs = local_processes()
        n, why = max(job_cores() // procs, 1), f"{job_cores()} cores / {procs} local process(es)"
    torch.set_num_threads(n)
    return n, why
