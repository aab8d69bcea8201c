"""`make demo`: pretrain -> finetune -> label-efficiency report for vision (digits) and text (stdlib docstrings).

Runs the real CLIs with the shipped configs, so what the demo shows is what a user's run does. Results land in
runs/demo/{vision,text}/ and one runs/demo/README.md shows both plots and tables.
"""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from .atomic import write_text

ROOT = Path(__file__).resolve().parents[1]
DEMOS = [
    ("vision", "configs/vision/simclr_digits.yaml", "SimCLR on scikit-learn's digits (8x8 handwritten digits, 10 classes)"),
    ("text", "configs/text/mlm_embedded.yaml", "MLM on Python standard-library docstrings (labelled by package, 10 classes)"),
]


def run(stage: str, config: str, out: Path) -> None:
    cmd = [sys.executable, "-m", stage, "--config", config, f"output_dir={out}"]
    print(f"\n$ {' '.join(cmd[1:])}", flush=True)
    proc = subprocess.run(cmd, cwd=ROOT)
    if proc.returncode != 0:
        sys.exit(proc.returncode)


def main(base: str = "runs/demo") -> None:
    base_dir = ROOT / base
    sections = ["# ssl_pipeline demo results", ""]
    t0 = time.time()
    for name, config, what in DEMOS:
        out = Path(base) / name  # relative to ROOT (the stages run there), so reports show portable paths
        start = time.time()
        run("pretrain", config, out)
        run("finetune", config, out)
        md = (ROOT / out / "label_efficiency.md").read_text()
        sections += [f"## {name}: {what}", "", f"Config: `{config}`; {time.time() - start:.0f} s on this machine.", "",
                     f"![{name} label efficiency]({name}/label_efficiency.png)", "", md, ""]
    write_text(base_dir / "README.md", "\n".join(sections))
    print(f"\ndemo finished in {time.time() - t0:.0f} s. Results:\n  {base_dir / 'README.md'}\n"
          f"  {base_dir / 'vision' / 'label_efficiency.png'}\n  {base_dir / 'text' / 'label_efficiency.png'}")


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/demo", help="where the demo writes its runs and README.md")
    main(ap.parse_args().out)
