"""`ssl-launch` (or `python -m ssl_pipeline.launch`): `accelerate launch` whose own launcher stays quiet.

The workers already end cleanly: a one-line error, or on Ctrl-C / SIGTERM a checkpoint and "interrupted at step
N". But `accelerate launch`'s parent process (torch's elastic agent) then raises its own `SignalException` or
`ChildFailedError` with a traceback and a failure table, which buries that line. This runs the very same
launcher (same flags) and turns those into the workers' exit code.
"""
from __future__ import annotations

import subprocess
import sys


def main(argv=None) -> None:
    from accelerate.commands.launch import launch_command, launch_command_parser
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    args = launch_command_parser().parse_args(argv)
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


if __name__ == "__main__":
    main()
