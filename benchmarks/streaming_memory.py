"""Peak RSS of streaming MLM pretraining for two corpus sizes (flat = memory does not grow with the corpus).

Writes two synthetic-text JSON-lines corpora (default 20 MB and 100 MB), trains a tokenizer on a sample,
then runs `pretrain` with data.streaming=true over (nearly) the whole of each corpus in a subprocess and
reports its peak resident memory. For contrast it also runs the in-memory path on the small corpus.

usage: python benchmarks/streaming_memory.py [--sizes-mb 20 100]
"""
from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORDS = ("the of and to in is that for with as on by this from are be or an it which at into data model file "
         "package library tool server client network system support python module function class test").split()


def write_corpus(path: Path, mb: int) -> int:
    rng = random.Random(0)
    n = 0
    with open(path, "w") as fh:
        while fh.tell() < mb * 1_000_000:
            fh.write(json.dumps({"text": " ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 60)))}) + "\n")
            n += 1
    return n


def peak_rss_mb(cmd: list[str]) -> tuple[float, float, float]:
    """Runs `cmd`, sampling its resident memory every 0.2 s: (peak MB, MB at mid-run, seconds)."""
    import psutil

    t0 = time.time()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=dict(os.environ, OMP_NUM_THREADS="2"))
    ps, samples = psutil.Process(proc.pid), []
    while proc.poll() is None:
        try:
            samples.append(ps.memory_info().rss / 2 ** 20)
        except psutil.NoSuchProcess:
            break
        time.sleep(0.2)
    if proc.returncode:
        raise SystemExit(f"run failed: {' '.join(cmd)}")
    return max(samples), samples[len(samples) // 2], time.time() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes-mb", type=int, nargs="+", default=[20, 100])
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    from ssl_pipeline.data.text import train_tokenizer

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        common = [sys.executable, "-m", "pretrain", "--config", "configs/text/mlm_embedded.yaml", "data.source=jsonl",
                  "model.hidden_size=64", "model.num_layers=1", "model.num_heads=1", "model.intermediate_size=128",
                  "data.max_length=128", "pretrain.batch_size=256", "pretrain.log_every=50",
                  "pretrain.checkpoint_every=100000", "pretrain.eval_every=100000"]
        tok_dir = tmp / "tok"
        sample = [json.loads(line)["text"] for line, _ in zip(open(write_and_path(tmp, args.sizes_mb[0])), range(5000))]
        train_tokenizer(sample, 2000).save_pretrained(str(tok_dir))
        print(f"{'corpus':>8} {'texts':>9} {'mode':>10} {'steps':>6} {'peak RSS MB':>12} {'mid-run MB':>11} {'seconds':>8}")
        for mb in args.sizes_mb:
            corpus = tmp / f"c{mb}.jsonl"
            n = write_corpus(corpus, mb) if not corpus.exists() else sum(1 for _ in open(corpus))
            steps = max(1, int(mb * 1_000_000 / 6 / (256 * 128) * 0.9))  # ~6 bytes per token, 90 % of the corpus
            rss, mid, sec = peak_rss_mb(common + [f"output_dir={tmp / f'o{mb}'}", f"data.files=[{corpus}]", "data.streaming=true",
                                             f"model.tokenizer={tok_dir}", f"pretrain.max_steps={steps}"])
            print(f"{mb:>6}MB {n:>9} {'streaming':>10} {steps:>6} {rss:>12.0f} {mid:>11.0f} {sec:>8.0f}", flush=True)
        mb = args.sizes_mb[0]
        rss, mid, sec = peak_rss_mb(common + [f"output_dir={tmp / 'mem'}", f"data.files=[{tmp / f'c{mb}.jsonl'}]",
                                         f"model.tokenizer={tok_dir}", "pretrain.max_steps=20"])
        print(f"{mb:>6}MB {'':>9} {'in-memory':>10} {20:>6} {rss:>12.0f} {mid:>11.0f} {sec:>8.0f}")


def write_and_path(tmp: Path, mb: int) -> Path:
    path = tmp / f"c{mb}.jsonl"
    write_corpus(path, mb)
    return path


if __name__ == "__main__":
    main()
