"""Folders of files as datasets, for images and text documents alike: listing, split layouts, class folders.

The layouts users have (ImageFolder, 20 Newsgroups, IMDB's aclImdb): class sub-folders (`ROOT/CLASS/file`), optionally
beside an `unlabeled/` folder; or `train/` with class sub-folders beside any of `val/` (or `validation/`), `test/` and
`unlabeled/`; a folder without class sub-folders is unlabeled. The class of a file is its first sub-folder below the
split's folder.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Optional

from ..errors import UserError
from ..progress import say_once

# sub-folder name -> split; any of these at the top of data.root makes it a split layout
SPLIT_DIRS = {"train": "train", "val": "validation", "validation": "validation", "test": "test",
              "unlabeled": "unlabeled", "unlabelled": "unlabeled"}

_LISTED: dict[str, tuple[int, list[str], list[tuple[str, str]]]] = {}  # folder -> (mtime, sub-folders, (name, path))


def accepted_layouts(example: str, what: str) -> str:
    return (f"accepted layouts: class sub-folders (ROOT/CLASS/{example}), optionally beside unlabeled/ (any {what}); "
            f"or train/ with class sub-folders plus "
            f"any of val/ (or validation/), test/ (same classes) and unlabeled/ (any {what}); or {what} without class "
            "sub-folders (unlabeled, pretraining only)")


def list_files(root: Path, accept: Callable[[str], bool], threads: int = 16, skip: Optional[Path] = None) -> list[str]:
    """Files under `root` whose name `accept`s, sorted; hidden files and folders (.ipynb_checkpoints, .thumbnails,
    ...) skipped, and so is the sub-folder `skip` (ROOT/unlabeled/ beside the class folders: not a class).

    Folders are listed by a pool of threads (os.scandir waits on the file system without holding the GIL: on
    network file systems and cold caches a million files list several times faster). Symlinked folders are
    followed (class folders are often links to another disk), each real folder once."""
    from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

    def list_dir(path: str) -> tuple[list[str], list[str]]:
        subdirs, found = [], []
        try:
            stamp = os.stat(path).st_mtime_ns  # changes when an entry is added, removed or renamed
            if _LISTED.get(path, (None,))[0] == stamp:  # the same process reads a folder up to 3 times (splits,
                _, subdirs, found = _LISTED[path]  # leakage guard, monitor): list each folder once
            else:
                with os.scandir(path) as entries:
                    for e in entries:
                        if not e.name.startswith("."):
                            (subdirs if e.is_dir() else found).append((e.name, e.path))
                subdirs = [p for _, p in subdirs]
                _LISTED[path] = (stamp, subdirs, found)
        except OSError as err:
            raise UserError(f"cannot list the folder {path}: {err.strerror or err}") from None
        return subdirs, [p for name, p in found if accept(name)]

    files: list[str] = []
    seen = {os.path.realpath(root)} | ({os.path.realpath(skip)} if skip is not None else set())
    with ThreadPoolExecutor(threads) as pool:
        pending = {pool.submit(list_dir, str(root))}
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                subdirs, found = future.result()
                files.extend(found)
                for d in subdirs:
                    real = os.path.realpath(d)
                    if real not in seen:
                        seen.add(real)
                        pending.add(pool.submit(list_dir, d))
    files.sort()
    return files


ARCHIVES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".7z", ".rar")


def folder_root(root: Optional[str], what: str) -> Path:
    """data.root as a directory, or a one-line error: unset, missing, or an archive as downloaded (`photos.zip`),
    which is to be extracted first."""
    if not root:
        raise UserError(f"data.root must name the folder of {what} for data.source=folder")
    path = Path(root).expanduser()
    if path.is_file() and path.name.lower().endswith(ARCHIVES):
        name = path.name.lower()
        tool = "unzip" if name.endswith(".zip") else "7z x" if name.endswith(".7z") else "unrar x" if name.endswith(
            ".rar") else "tar xf"
        raise UserError(f"data.root {path} is an archive, not a folder: extract it (`{tool} {path.name}`) and set "
                        "data.root to the extracted folder")
    if not path.is_dir():
        raise UserError(f"data.root does not exist or is not a directory: {path}")
    return path


def folder_layout(root: Path, example: str = "img.png", what: str = "images") -> dict[str, Path]:
    """{split: directory}. Split sub-folders are recognised; names that only look like splits are refused,
    because read as classes they would silently train a 'train' vs 'test' classifier."""
    subdirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    named = [p for p in subdirs if p.name.lower() in SPLIT_DIRS]
    if not named:
        return {"train": root}
    kinds = [SPLIT_DIRS[p.name.lower()] for p in named]
    others = [p.name for p in subdirs if p not in named]
    if "train" in kinds and not others and len(set(kinds)) == len(kinds):
        return dict(zip(kinds, named))
    if kinds == ["unlabeled"] and len(others) >= 2:  # class folders beside the unlabeled pool: the ROOT is train/
        return {"train": root, "unlabeled": named[0]}
    found = ", ".join(f"{p.name}/" for p in subdirs[:8]) + (" ..." if len(subdirs) > 8 else "")
    raise UserError(f"data.root {root} has sub-folders {found} whose names look like splits, but they do not form "
                    f"a split layout; {accepted_layouts(example, what)}")


def scan(base: Path, accept: Callable[[str], bool],
         layout: Optional[dict] = None) -> tuple[list[str], list[Optional[str]]]:
    """Files under `base` and their class (first sub-folder; None for files directly in `base`). With the folder's
    `layout`, an unlabeled/ folder inside `base` (beside the class folders) is not read as a class."""
    inside = layout is not None and layout.get("unlabeled") is not None and layout["unlabeled"].parent == base
    files = list_files(base, accept, skip=layout["unlabeled"] if inside else None)
    classes = []
    for f in files:
        parts = Path(f).relative_to(base).parts
        classes.append(parts[0] if len(parts) > 1 else None)
    return files, classes


def names(paths: list[str], most: int = 2) -> str:
    shown = ", ".join(os.path.basename(f) for f in paths[:most])
    return shown + (", ..." if len(paths) > most else "")


def not_read(files: list[str], what: str) -> str:
    """'3 not images (.heic, .txt)': a summary line's account of files a folder holds but no stage reads."""
    suffixes = sorted({Path(f).suffix.lower() or "no suffix" for f in files})
    return f"{len(files):,} not {what} ({', '.join(suffixes[:5])}{' ...' if len(suffixes) > 5 else ''})"


def summarize(where: str, count: int, unit: str, classes: list[str], unlabeled: int, carve_fraction: Optional[float],
              skipped: list[str], skipped_what: str = "files", unlabeled_what: str = "unlabeled") -> None:
    """The one line a run prints about its data (once per process; `where`: 'data.root DIR', 'data.files a.csv'):
    what was read as what, what is held out, and what was not read — so a folder of iPhone photos beside their .MOV
    clips, a README among the documents, or a table's empty rows are accounted for instead of silently dropped."""
    line = f"{where}: " + (f"{count:,} {unit} in {len(classes)} classes ({names(classes, 8)})"
                           if len(classes) >= 2 else f"{count:,} unlabeled {unit}")
    if unlabeled:
        line += f" + {unlabeled:,} {unlabeled_what} (pretraining only)"
    if carve_fraction:
        line += f"; a stratified {carve_fraction:.0%} test split is carved out"
    if skipped:
        line += f"; skipped {skipped_what}: " + "; ".join(skipped)
    say_once(line, key=where)


def summarize_rows(where: str, count: int, unit: str, classes: list[str], unlabeled: int,
                   carve_fraction: Optional[float], empty: int, unlabeled_what: str) -> None:
    """summarize() for a table (files or a hub dataset): rows rather than files, and the rows dropped for an empty
    text."""
    summarize(where, count, unit, classes, unlabeled, carve_fraction, [f"{empty:,} with no text"] if empty else [],
              skipped_what="rows", unlabeled_what=unlabeled_what)
