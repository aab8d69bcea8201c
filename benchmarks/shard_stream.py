"""Image pretraining from webdataset tar shards vs the same images as a folder: peak memory at two data sizes
(flat = memory does not grow with the data) and images/s, side by side in one run.

Writes an unlabeled folder of N 32x32 PNGs per size, turns it into shards with `make_shards`, then runs the real
`pretrain` entry point (SimCLR, the folder recipe's ssl_cnn6 at 32 px, 2 DataLoader workers decoding) over ~90 %
of the images from each source in a subprocess, sampling its resident memory (the process and its workers). The
folder runs twice: decoded every epoch (`data.in_memory_gb=0`, the path of a pool too large for memory: what shards
replace) and decoded once into memory (the default for a pool that fits).

usage: python benchmarks/shard_stream.py [--sizes 10000 40000] [--batch 256]
"""
from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def write_folder(root: Path, n: int) -> None:
    rng = np.random.default_rng(0)
    blobs = []
    for _ in range(256):
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(buf, format="PNG")
        blobs.append(buf.getvalue())
    root.mkdir(parents=True)
    for i in range(n):
        (root / f"{i:07d}.png").write_bytes(blobs[i % len(blobs)])


def run(cmd: list[str], out: Path) -> tuple[float, float]:
    """(peak MB of the run and its DataLoader workers, median images/s after the first log row)."""
    import psutil

    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, OMP_NUM_THREADS="2"))
    ps, peak = psutil.Process(proc.pid), 0.0
    while proc.poll() is None:
        try:
            procs = [ps] + ps.children(recursive=True)
            peak = max(peak, sum(p.memory_info().rss for p in procs if p.is_running()) / 2 ** 20)
        except psutil.NoSuchProcess:
            pass
        time.sleep(0.2)
    if proc.returncode:
        raise SystemExit(f"run failed: {' '.join(cmd)}\n{proc.stderr.read()[-2000:]}")
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    speeds = [r["samples_per_sec"] for r in rows if "samples_per_sec" in r][1:]
    return peak, statistics.median(speeds)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 40_000])
    ap.add_argument("--batch", type=int, default=256)
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    from ssl_pipeline.data.shards import make_shards

    common = [sys.executable, "-m", "pretrain", "--config", "configs/vision/simclr_folder.yaml",
              f"pretrain.batch_size={args.batch}", "pretrain.log_every=5", "pretrain.checkpoint_every=100000",
              "pretrain.monitor_every=0", "data.num_workers=2", "threads=2"]
    print(f"{'images':>8} {'source':>11} {'steps':>6} {'peak MB':>8} {'images/s':>9}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for n in args.sizes:
            folder, shards = tmp / f"img{n}", tmp / f"shards{n}"
            write_folder(folder, n)
            t0 = time.time()
            make_shards(str(folder), str(shards), shard_size=2000)
            made = time.time() - t0
            steps = max(2, int(0.9 * n / args.batch))
            # "folder" decodes every epoch in the workers (data.in_memory_gb=0): the folder's path for a pool too large
            # for memory, which is what shards are for; "folder-mem" is the default for a pool that fits (decoded once)
            for source, extra in (("folder", [f"data.root={folder}", "data.in_memory_gb=0"]),
                                  ("folder-mem", [f"data.root={folder}"]),
                                  ("webdataset", ["data.source=webdataset", f"data.root={shards}"])):
                out = tmp / f"run_{source}_{n}"
                peak, speed = run(common + extra + [f"output_dir={out}", f"pretrain.max_steps={steps}"], out)
                print(f"{n:>8} {source:>11} {steps:>6} {peak:>8.0f} {speed:>9.0f}"
                      + (f"   (make_shards: {made:.1f} s)" if source == "webdataset" else ""), flush=True)


if __name__ == "__main__":
    main()
