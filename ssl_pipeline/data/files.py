"""File arguments shared by the image and text loaders: globs and directories -> sorted file lists."""
from __future__ import annotations

import glob
import os
from pathlib import Path

from ..errors import UserError

# file suffix -> `datasets` packaged builder
FORMATS = {"jsonl": "json", "json": "json", "csv": "csv", "parquet": "parquet", "txt": "text", "text": "text"}


def expand_files(patterns: list[str]) -> list[str]:
    """Each pattern is a file, a glob (`**` allowed) or a directory (all files below it), in sorted order."""
    files = []
    for p in patterns:
        p = os.path.expanduser(p)
        if os.path.isdir(p):
            hits = sorted(f for f in glob.glob(os.path.join(p, "**", "*"), recursive=True) if os.path.isfile(f))
        else:
            hits = sorted(glob.glob(p, recursive=True))
        if not hits:
            raise UserError(f"data path does not exist or matches no file: {p}")
        files.extend(hits)
    return files


def file_format(path: str, default: str = "text") -> str:
    """The `datasets` builder for a file, from its suffix."""
    return FORMATS.get(Path(path).suffix.lower().lstrip("."), default)
