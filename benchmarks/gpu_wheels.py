"""Fills benchmarks/wheels/ with what the GPU check needs beyond the GPU image: run with the Python of a virtualenv
that holds only the image's packages (`make gpu-wheels` builds one), on a machine that reaches the registry.

pip resolves the check's needs against that environment (`install --dry-run --report`), so exactly the missing
distributions, at the versions that fit the image's, are fetched as wheels (`wheel --no-deps`); the folder must stay
under 64 MiB because it travels with the working tree.

usage: .gpu-image/bin/python benchmarks/gpu_wheels.py [--out benchmarks/wheels]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# what pretraining and the GPU check import beyond the image (not scikit-learn, TensorBoard: fine-tuning and
# trackers are not part of the check, and their wheels alone would exceed the budget)
NEEDS = ["lightly>=1.5", "kornia>=0.7", "datasets>=2.20", "matplotlib>=3.7", "webdataset>=0.2.86"]
LIMIT_MB = 64


def missing(needs: list[str]) -> list[str]:
    report = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--report", "-", *needs],
                            capture_output=True, text=True, check=True).stdout
    return [f"{i['metadata']['name']}=={i['metadata']['version']}" for i in json.loads(report)["install"]]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "wheels"))
    args = ap.parse_args()
    out = Path(args.out)
    pins = missing(NEEDS)
    print(f"missing from this environment: {' '.join(pins)}")
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.whl"):
        old.unlink()
    # `pip wheel`: downloads each wheel, and builds one where only a source archive exists (antlr4 4.9.3, which
    # hydra-core pins), so the GPU machine never needs a build
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(out), *pins], check=True)
    size = sum(p.stat().st_size for p in out.glob("*.whl")) / 2 ** 20
    print(f"{len(list(out.glob('*.whl')))} wheels, {size:.1f} MiB in {out}")
    if size > LIMIT_MB:
        raise SystemExit(f"the wheel folder is {size:.1f} MiB, over the {LIMIT_MB} MiB it may take")


if __name__ == "__main__":
    main()
