"""`ssl-launch` (or `python -m ssl_pipeline.launch`): `accelerate launch` whose own launcher stays quiet.

The workers already end cleanly: a one-line error, or on Ctrl-C / SIGTERM a checkpoint and "interrupted at step
N". But `accelerate launch`'s parent process (torch's elastic agent) then raises its own `SignalException` or
`ChildFailedError` with a traceback and a failure table, which buries that line. This runs the very same
launcher (same flags) and turns those into the workers' exit code.

With one process it also leaves Ctrl-C to the worker, which gets it from the terminal anyway (same process group),
as a shell or C's `system()` do for the command they wait on. Accelerate's one-process launcher answers Ctrl-C by
sending the worker SIGTERM and, 5 s later, SIGKILL, and stops copying its output after 5 s more: an interrupt
checkpoint or the worker's "interrupted" line that took longer under load was killed or lost. SIGTERM sent to the
launcher is still passed on to the worker.
"""
from __future__ import annotations

import signal
import subprocess
import sys


def main(argv=None) -> None:
    from accelerate.commands import launch as accelerate_launch
    from accelerate.commands.launch import launch_command, launch_command_parser
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    args = launch_command_parser().parse_args(argv)
    # accelerate has no option for it: its module-level one-process launcher is wrapped
    accelerate_launch.simple_launcher = _ctrl_c_left_to_the_worker(accelerate_launch.simple_launcher)
    try:
        launch_command(args)
    except SignalException as stop:  # the workers have written their interrupt checkpoint and said so
        sys.exit(128 + int(stop.sigval))
    except ChildFailedError as failed:  # the failing worker printed its own error line
        codes = [f.exitcode for f in failed.failures.values()]
        sys.exit(next((c for c in codes if c and c > 0), 1))
    except subprocess.CalledProcessError as failed:  # single-process launches
        sys.exit(failed.returncode if failed.returncode > 0 else 128 - failed.returncode)
    except KeyboardInterrupt:  # Ctrl-C reached the launcher too; the worker handles its own
        sys.exit(130)


def _ctrl_c_left_to_the_worker(simple_launcher):
    """The launcher itself ignores SIGINT while its worker runs: through a Python handler that does nothing, not
    SIG_IGN, which the worker would inherit (and then never see Ctrl-C). Only over Python's default handler: a
    launcher started with SIGINT ignored (nohup, `&`) already starts its worker so."""

    def launch(args):
        if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
            return simple_launcher(args)
        previous = signal.signal(signal.SIGINT, _the_worker_handles_it)
        try:
            return simple_launcher(args)
        finally:
            signal.signal(signal.SIGINT, previous)

    return launch


def _the_worker_handles_it(signum, frame) -> None:
    """The worker ends the run itself: a checkpoint or the data it finished, one line, exit 130, which the
    launcher then returns."""


if __name__ == "__main__":
    main()
