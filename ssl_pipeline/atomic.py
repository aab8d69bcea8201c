"""Atomic file and directory writes: write beside the target, then rename, so a crash never leaves half a file."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from .errors import NO_SPACE, UserError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def out_of_space(err: BaseException, path: str | os.PathLike) -> bool:
    """Whether a write to `path` failed for want of disk space. Libraries do not always keep the errno: torch's zip
    writer reports a short write as `RuntimeError: [enforce fail at inline_container.cc:672] . unexpected pos 82624
    vs 82512`, so a disk left with less than 1 MiB free after the failure counts too."""
    seen = err
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in NO_SPACE:
            return True
        seen = seen.__cause__ or seen.__context__
    return free_bytes(path) < 1 << 20


def nearest_existing(path: str | os.PathLike) -> Path:
    """`path` itself when it exists, else the nearest of its parents that does (where it would be created)."""
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def free_bytes(path: str | os.PathLike) -> float:
    """Space free for writing on the disk holding `path` (its nearest existing folder); infinite when unknown."""
    try:
        return shutil.disk_usage(nearest_existing(path)).free
    except OSError:
        return float("inf")


def no_space(path: str | os.PathLike, what: str) -> UserError:
    free = free_bytes(path)
    return UserError(f"no space left on the disk holding {path} while writing {what} ({free / 2**20:,.1f} MiB free): "
                     "free some space, or set output_dir to another disk, and run the same command again (finished "
                     "work is kept: the last complete checkpoint, cells and exports)")


@contextlib.contextmanager
def space_checked(path: str | os.PathLike, what: str):
    """A write that fails for want of disk space is a one-line UserError naming the disk (not torch's or the OS's
    traceback); any other failure is raised as it is."""
    try:
        yield
    except UserError:
        raise
    except Exception as err:
        if out_of_space(err, path):
            raise no_space(path, what) from None
        raise


@contextlib.contextmanager
def atomic_dir(target: str | os.PathLike):
    """Yields a temporary directory next to `target`; on success it replaces `target` in one rename."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{target.name}-", dir=target.parent))
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700; the result should be as readable as any new directory
    try:
        with space_checked(target, str(target.name)):
            yield tmp
        if target.exists():
            old = target.parent / f".old-{target.name}-{os.getpid()}"
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def _replaced(path: str | os.PathLike, mode: str):
    """Yields a file opened (`mode`) beside `path`; on success it is synced, made as readable as any new file
    (mkstemp makes 0600) and renamed over `path`; on failure it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".tmp-{path.name}-", dir=path.parent)
    try:
        with space_checked(path, path.name), os.fdopen(fd, mode, **({"encoding": "utf-8"} if "b" not in mode else {})) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text(path: str | os.PathLike, text: str) -> None:
    with _replaced(path, "w") as fh:
        fh.write(text)


def write_json(path: str | os.PathLike, obj) -> None:
    write_text(path, json.dumps(obj, indent=2) + "\n")


def save_figure(fig, path: str | os.PathLike) -> Path:
    """Writes a matplotlib figure as PNG atomically and closes it."""
    import matplotlib.pyplot as plt

    try:
        with _replaced(path, "wb") as fh:
            fig.savefig(fh, format="png")
    finally:
        plt.close(fig)
    return Path(path)
