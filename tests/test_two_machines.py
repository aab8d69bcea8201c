"""Two "machines" on localhost (`accelerate launch --num_machines 2 --machine_rank 0|1`, one gloo process each):
negatives are gathered across machines (the loss equals the one-process loss on the global batch), and the
pretraining stage runs, checkpoints and exports across both."""
import subprocess
import sys

import torch
from lightly.loss import NTXentLoss

from conftest import ROOT, cli_env, free_port


def _machines(script_and_args: list[str], timeout: int = 600) -> list[subprocess.CompletedProcess]:
    port = free_port()
    procs = []
    for rank in (0, 1):
        cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_machines", "2",
               "--machine_rank", str(rank), "--num_processes", "2", "--main_process_ip", "127.0.0.1",
               "--main_process_port", str(port), "--mixed_precision", "no", "--dynamo_backend", "no"] + script_and_args
        procs.append(subprocess.Popen(cmd, cwd=ROOT, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True))
    done = []
    for p in procs:
        out, err = p.communicate(timeout=timeout)
        done.append(subprocess.CompletedProcess(p.args, p.returncode, out, err))
    return done


def test_negatives_are_gathered_across_two_machines(tmp_path):
    out = tmp_path / "dist.pt"
    results = _machines([str(ROOT / "tests/scripts/contrastive_dist.py"), str(out), "ntxent"])
    assert all(r.returncode == 0 for r in results), [r.stderr[-2000:] for r in results]
    dist = torch.load(out)
    g = torch.Generator().manual_seed(0)
    z0, z1 = torch.randn(16, 8, generator=g), torch.randn(16, 8, generator=g)
    loss = NTXentLoss(temperature=0.5)(z0, z1)
    assert torch.allclose(dist["loss"], loss, atol=1e-5), (dist["loss"], loss)
    assert not torch.allclose(NTXentLoss(temperature=0.5)(z0[:8], z1[:8]), loss, atol=1e-3)


def test_pretraining_runs_on_two_machines(tmp_path):
    out = tmp_path / "run"
    results = _machines(["-m", "pretrain", "--config", "configs/vision/simclr_digits.yaml", f"output_dir={out}",
                         "pretrain.max_steps=3", "pretrain.batch_size=32", "pretrain.checkpoint_every=2",
                         "model.projection_hidden_dim=32"])
    assert all(r.returncode == 0 for r in results), [r.stderr[-2000:] for r in results]
    assert "2 process(es)" in results[0].stdout and "global batch 64" in results[0].stdout
    assert (out / "encoder" / "model.safetensors").is_file() and (out / "checkpoints" / "step_0000003").is_dir()
