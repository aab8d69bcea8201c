"""The one GPU check (run through benchmarks/gpu_check.sh): every GPU figure the README needs, in one JSON.

Parts, each in its own try block and the JSON rewritten (atomically) after each, so a failure or a timeout
still leaves every finished figure: the card; SimCLR full (views overlapped) vs model-only step vs lightly's
recipe at 32 px and 224 px, fp32 and bf16, torch.compile on and off; MLM tokens/s vs the HF Trainer recipe;
peak GPU memory of each; a ~2-minute Fashion-MNIST GPU pretraining smoke run through `accelerate launch`.

`--rehearse` runs the same code on the CPU at toy sizes, so GPU minutes are never spent on set-up errors.

usage: python benchmarks/gpu_check.py [--out OUT.json] [--rehearse] [--budget 450]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import traceback
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))


def card() -> dict:
    info = {"torch": torch.__version__, "python": platform.python_version(), "host": platform.node()}
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        info |= {"device": "cuda", "card": p.name, "memory_gb": round(p.total_memory / 2 ** 30, 1),
                 "cuda": torch.version.cuda, "gpus": torch.cuda.device_count(), "bf16": torch.cuda.is_bf16_supported()}
    else:
        info |= {"device": "cpu", "card": f"no GPU (rehearsal on {os.cpu_count()} CPU cores)"}
    return info


def peak_memory_mb(device: str) -> float | None:
    return torch.cuda.max_memory_allocated() / 2 ** 20 if device == "cuda" else None


def vision(device: str, rehearse: bool) -> list[dict]:
    import vision_throughput as vt

    rows = []
    plans = ([("resnet18", 32, 256, 30, False), ("resnet18", 32, 256, 30, True), ("resnet50", 224, 64, 20, False)]
             if not rehearse else [("resnet18", 32, 16, 2, False), ("resnet18", 32, 16, 1, True),
                                   ("resnet18", 64, 4, 1, False)])
    for backbone, size, batch, steps, compiled in plans:
        args = vt.parser().parse_args([
            "--backbone", backbone, "--image-size", str(size), "--batch", str(batch), "--steps", str(steps),
            "--warmup", "5" if not rehearse else "1", "--device", device, "--workers", "8" if not rehearse else "1"]
            + (["--compile", "--precisions", "bf16"] if compiled else ["--precisions", "fp32", "bf16"]))
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        for row in vt.measure(args):
            rows.append(row | {"peak_memory_mb": peak_memory_mb(device)})
    return rows


def text(device: str, rehearse: bool) -> list[dict]:
    import text_throughput as tt

    size = (["--hidden", "768", "--layers", "12", "--vocab", "30522", "--batch", "64", "--steps", "20"]
            if not rehearse else ["--hidden", "64", "--layers", "1", "--vocab", "512", "--batch", "4", "--steps", "2",
                                  "--warmup", "1"])
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    rows = tt.measure(tt.parser().parse_args(size + ["--device", device, "--precisions", "fp32", "bf16"]))
    return [row | {"peak_memory_mb": peak_memory_mb(device)} for row in rows]


def smoke(rehearse: bool, seconds: int, out_dir: Path) -> dict:
    """Fashion-MNIST SimCLR pretraining on the GPU recipe for ~`seconds` (max_steps from a measured first phase
    would need two launches; a fixed step count sized for a mid-range card is used instead, and time-boxed)."""
    data = ROOT / "data" / "FashionMNIST" / "raw"
    cfg = ["--config", "configs/vision/simclr_fashion_mnist_gpu.yaml", f"output_dir={out_dir}",
           "pretrain.checkpoint_every=100000", "pretrain.log_every=10", "pretrain.monitor_every=100",
           "pretrain.log_with=[]"]  # TensorBoard is not in the GPU image (nor in the wheel folder)
    if not data.is_dir():
        cfg += ["data.source=embedded", "data.name=digits", "data.image_size=8"]  # the data did not travel along
    cfg += ["pretrain.max_steps=3", "pretrain.batch_size=32", "pretrain.compile=false"] if rehearse else \
        ["pretrain.max_steps=600"]
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "1", "--num_machines", "1",
           "--mixed_precision", "bf16" if torch.cuda.is_available() else "no", "--dynamo_backend", "no",
           "-m", "pretrain"] + cfg
    t0 = time.time()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # its own process group: a timeout stops the workers too
    try:
        _, err = proc.communicate(timeout=seconds)
        code, tail = proc.returncode, err[-1500:]
    except subprocess.TimeoutExpired:
        import signal

        os.killpg(proc.pid, signal.SIGTERM)  # the run checkpoints and exits on SIGTERM
        _, err = proc.communicate()
        code, tail = "timeout", (err or "")[-1500:]
    rows = []
    metrics = out_dir / "metrics.jsonl"
    if metrics.is_file():
        rows = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    speeds = sorted(r["samples_per_sec"] for r in rows if "samples_per_sec" in r)
    health = [r for r in rows if "rankme" in r]
    return {"exit": code, "seconds": round(time.time() - t0, 1), "data": "FashionMNIST" if data.is_dir() else "digits",
            "steps": rows[-1]["step"] if rows else 0, "images_per_sec_median": speeds[len(speeds) // 2] if speeds else None,
            "last_loss": next((r["loss"] for r in reversed(rows) if "loss" in r), None),
            "last_monitor": health[-1] if health else None, "stderr_tail": tail if code else ""}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=None, help="default benchmarks/gpu_check.json (rehearsal: gpu_check_rehearsal.json)")
    ap.add_argument("--rehearse", action="store_true", help="CPU, toy sizes: check the script, not the speed")
    ap.add_argument("--budget", type=float, default=450, help="seconds; parts not started by then are skipped")
    args = ap.parse_args()
    from ssl_pipeline.atomic import write_text

    if not args.rehearse and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: run with --rehearse to check the script on the CPU")
    device = "cuda" if not args.rehearse else "cpu"
    start = time.time()
    result: dict = {"card": card(), "rehearsal": args.rehearse, "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
                    "parts": {}}
    out = Path(args.out or ROOT / "benchmarks" / ("gpu_check_rehearsal.json" if args.rehearse else "gpu_check.json"))
    smoke_seconds = 120 if args.rehearse else 150
    parts = [("vision", lambda: vision(device, args.rehearse)), ("text", lambda: text(device, args.rehearse)),
             ("smoke", lambda: smoke(args.rehearse, smoke_seconds, ROOT / "runs" / time.strftime("gpu_check_smoke_%Y%m%d_%H%M%S")))]
    for name, fn in parts:
        left = args.budget - (time.time() - start)
        if left < (smoke_seconds if name == "smoke" else 30):
            result["parts"][name] = {"skipped": f"budget: {left:.0f} s left"}
        else:
            t0 = time.time()
            try:
                result["parts"][name] = {"rows": fn(), "seconds": round(time.time() - t0, 1)}
            except Exception as err:  # keep going: the other parts' figures are worth the GPU minutes
                result["parts"][name] = {"error": f"{type(err).__name__}: {err}",
                                         "traceback": traceback.format_exc()[-3000:]}
        write_text(out, json.dumps(result, indent=2, default=str) + "\n")
        part = result["parts"][name]
        ok = "rows" in part and (name != "smoke" or part["rows"]["exit"] == 0)
        print(f"[gpu_check] {name}: {'ok' if ok else 'FAILED ' + str(part)[:2000]}", flush=True)
    failed = [n for n, p in result["parts"].items() if "rows" not in p or
              (n == "smoke" and p["rows"]["exit"] not in (0,))]
    print(f"[gpu_check] wrote {out} in {time.time() - start:.0f} s; "
          + (f"FAILED: {', '.join(failed)}" if failed else "all parts ok"), flush=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
