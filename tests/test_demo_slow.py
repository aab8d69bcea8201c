"""The whole demo (`make demo`), end to end: slow, run with `make test-slow`."""
import json
import subprocess
import sys

import pytest

from conftest import ROOT, cli_env


@pytest.mark.slow
def test_demo_writes_both_reports(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "ssl_pipeline.demo", "--out", str(tmp_path)], cwd=ROOT, env=cli_env(),
                          capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    readme = (tmp_path / "README.md").read_text()
    for modality in ("vision", "text"):
        doc = json.loads((tmp_path / modality / "label_efficiency.json").read_text())
        assert len(doc["rows"]) == 6 * 3 * 3
        assert f"{modality}/label_efficiency.png" in readme
    assert "Traceback" not in proc.stderr
