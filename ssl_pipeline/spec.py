"""The file beside every exported encoder that says how to rebuild it (written by export.py, read by export.py and
models/init.py): one name and one reader, in a module both may import."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

SPEC_FILE = "ssl_encoder.json"


def spec_if_exported(path) -> Optional[dict]:
    """The spec of an encoder directory exported by this project, or None for anything else."""
    spec_file = Path(path) / SPEC_FILE
    return json.loads(spec_file.read_text()) if spec_file.is_file() else None
