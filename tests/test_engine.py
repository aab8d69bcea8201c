"""engine.train in-process with a fake task: the loop's contract without a subprocess or a real model."""
import json
import math
import shutil

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from ssl_pipeline.config import load_config
from ssl_pipeline.engine import Task, TrainPlan, make_accelerator, train
from ssl_pipeline.errors import UserError


class LinearRegression(Task):
    """y = 3x - 1 with noise: the loss must fall; hooks and metrics are recorded."""

    modality = "vision"

    def __init__(self):
        g = torch.Generator().manual_seed(0)
        x = torch.randn(256, 1, generator=g)
        self.data = TensorDataset(x, 3 * x - 1 + 0.01 * torch.randn(256, 1, generator=g))
        self.model = nn.Linear(1, 1)
        self.seen_steps, self.exported = [], None

    def dataloader(self, batch_size, generator):
        return DataLoader(self.data, batch_size=batch_size, shuffle=True, generator=generator, drop_last=True,
                          collate_fn=lambda items: {"x": torch.stack([a for a, _ in items]),
                                                    "y": torch.stack([b for _, b in items])})

    def loss(self, model, batch, accelerator):
        err = model(batch["x"]) - batch["y"]
        return (err ** 2).mean(), {"abs_err": err.detach().abs().mean()}

    def after_optimizer_step(self, model, step, total_steps):
        assert isinstance(model, nn.Linear)  # unwrapped
        self.seen_steps.append((step, total_steps))

    def export(self, model, path):
        self.exported = path


@pytest.fixture(scope="module")
def accelerator():
    return make_accelerator(load_config(None, ["threads=1"]))


def test_train_runs_hooks_logs_and_exports(accelerator, tmp_path):
    task = LinearRegression()
    plan = TrainPlan(batch_size=32, epochs=3, max_steps=None, learning_rate=0.1, optimizer="sgd", log_every=4,
                     warmup_fraction=0.0, show_progress=False)
    first = train(LinearRegression(), TrainPlan(**{**plan.__dict__, "max_steps": 1}), accelerator, seed=0)
    row = train(task, plan, accelerator, seed=0, output_dir=tmp_path)
    assert row["step"] == 24 and task.seen_steps[-1] == (24, 24) and len(task.seen_steps) == 24
    assert row["loss"] < 0.05 * first["loss"] and "abs_err" in row and row["samples_per_sec"] > 0
    assert task.exported == tmp_path / "encoder"
    logged = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert len(logged) == 6  # every 4 steps
    # one accelerator trains every model of the fine-tune grid: no run's scheduler (nor, through it, its optimizer
    # and model) stays registered for checkpointing after it ends
    assert accelerator._custom_objects == []


def test_min_steps_raises_a_short_epoch_budget_and_max_steps_still_wins(accelerator, capsys):
    plan = TrainPlan(batch_size=32, epochs=1, max_steps=None, min_steps=20, learning_rate=0.1, optimizer="sgd",
                     show_progress=False)  # 256 examples: 8 steps per epoch
    task = LinearRegression()
    assert train(task, plan, accelerator, seed=0)["step"] == 20 and task.seen_steps[-1] == (20, 20)
    assert "1 epochs of 8 steps are fewer than pretrain.min_steps=20: training 20 steps (2 passes" in capsys.readouterr().out
    task = LinearRegression()
    assert train(task, TrainPlan(**{**plan.__dict__, "epochs": 4}), accelerator, seed=0)["step"] == 32
    assert "min_steps" not in capsys.readouterr().out  # the floor only ever raises the budget
    task = LinearRegression()
    assert train(task, TrainPlan(**{**plan.__dict__, "max_steps": 5}), accelerator, seed=0)["step"] == 5


class Counting(LinearRegression):
    """Keeps a count of its own (state a checkpoint must carry beyond model, optimizer and RNG)."""

    def __init__(self):
        super().__init__()
        self.count, self.resumed_at = 0, None

    def after_optimizer_step(self, model, step, total_steps):
        self.count += 2

    def state_dict(self):
        return {"count": torch.tensor(self.count)}

    def load_state_dict(self, state, batches_done):
        self.count, self.resumed_at = int(state["count"]), batches_done


def test_a_tasks_own_state_is_checkpointed_and_restored_with_its_data_position(accelerator, tmp_path):
    plan = TrainPlan(batch_size=32, epochs=3, max_steps=None, learning_rate=0.1, optimizer="sgd", log_every=4,
                     checkpoint_every=5, keep_checkpoints=5, show_progress=False)
    accelerator.free_memory()  # as the grid does between cells: a checkpoint holds this run's model alone
    first = Counting()
    train(first, plan, accelerator, seed=0, output_dir=tmp_path)
    accelerator.free_memory()
    from ssl_pipeline import checkpoint as ckpt

    assert int(ckpt.task_state(tmp_path / "checkpoints" / "step_0000010")["count"]) == 20
    for late in ckpt.complete(tmp_path / "checkpoints")[2:]:  # back to step 10 (epoch 1, batch 2 of 8)
        shutil.rmtree(late)
    again = Counting()
    train(again, plan, accelerator, seed=0, output_dir=tmp_path, resume=True)
    assert again.resumed_at == 10 and again.count == first.count == 48


def test_non_finite_loss_names_its_step_and_saves_nothing(accelerator, tmp_path):
    def nan_at_3(step, loss, acc):
        return torch.full_like(loss, math.nan) if step == 3 else loss

    plan = TrainPlan(batch_size=32, epochs=1, max_steps=8, learning_rate=0.1, optimizer="sgd", log_every=5,
                     checkpoint_every=4, show_progress=False)
    with pytest.raises(UserError) as err:
        train(LinearRegression(), plan, accelerator, seed=0, output_dir=tmp_path, step_hooks=(nan_at_3,))
    assert "loss is nan at step 3" in str(err.value)
    assert not (tmp_path / "checkpoints").exists() or not list((tmp_path / "checkpoints").glob("step_*"))


class Collapsing(LinearRegression):
    """Embeds its check set as a spread code at first and as one point from step 120 on."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(1)
        self.labels = torch.arange(64) % 4
        self.spread = torch.randn(64, 16, generator=g) + 3 * nn.functional.one_hot(self.labels, 16).float()
        self.step = 0

    def after_optimizer_step(self, model, step, total_steps):
        self.step = step

    def monitor_inputs(self):
        return {"i": torch.arange(64)}, self.labels

    def embed(self, model, inputs):
        assert not model.training  # checked in eval mode
        z = self.spread[inputs["i"]]
        return z if self.step < 120 else torch.ones_like(z) + 1e-4 * z


def test_monitor_logs_health_warns_on_collapse_and_can_stop(accelerator, tmp_path, capsys):
    import json

    plan = TrainPlan(batch_size=32, epochs=40, max_steps=240, learning_rate=0.1, optimizer="sgd", log_every=60,
                     monitor_every=60, warmup_fraction=0.05, show_progress=True)
    train(Collapsing(), plan, accelerator, seed=0, output_dir=tmp_path)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    health = [r for r in rows if "rankme" in r]
    assert [r["step"] for r in health] == [60, 120, 180, 240]
    assert health[0]["knn_accuracy"] > 0.9 and health[0]["embedding_std"] > 0.5 and health[0]["rankme"] > 8
    assert health[1]["embedding_std"] < 0.02 and health[1]["rankme"] < 2
    err = capsys.readouterr().err
    assert "warning: embeddings collapsed at step 120" in err and "knn=" in err
    assert all("lr=" in line for line in err.splitlines() if "knn=" in line)  # a check keeps the log row's figures
    # no alarm in the first 100 steps (BatchNorm's running statistics are still warming up)
    early = TrainPlan(**{**plan.__dict__, "max_steps": 60, "monitor_every": 20})
    (tmp_path / "early").mkdir()
    collapsing_early = Collapsing()
    collapsing_early.embed = lambda model, inputs: torch.ones(len(inputs["i"]), 16)
    train(collapsing_early, early, accelerator, seed=0, output_dir=tmp_path / "early")
    assert "warning" not in capsys.readouterr().err
    (tmp_path / "stop").mkdir()
    with pytest.raises(UserError) as stop:
        train(Collapsing(), TrainPlan(**{**plan.__dict__, "stop_on_collapse": True}), accelerator, seed=0,
              output_dir=tmp_path / "stop")
    assert "embeddings collapsed at step 120" in str(stop.value) and "stop_on_collapse" in str(stop.value)
    from ssl_pipeline.curves import plot_pretraining

    png = plot_pretraining(tmp_path, "collapsing")
    assert png == tmp_path / "pretrain_curves.png" and png.stat().st_size > 10_000
    assert plot_pretraining(tmp_path / "stop" / "nothing") is None


def test_rankme_and_knn_match_hand_computed_values():
    from ssl_pipeline.monitor import knn_accuracy, rankme

    z = torch.zeros(6, 4)
    z[:3, 0], z[3:, 1] = 1.0, 2.0  # two directions, singular values sqrt(3) and 2*sqrt(3)
    p = torch.tensor([1 / 3, 2 / 3])
    assert rankme(z) == pytest.approx(float(torch.exp(-(p * p.log()).sum())), rel=1e-4)
    labels = torch.tensor([0, 0, 0, 1, 1, 1])
    assert knn_accuracy(z + 0.01 * torch.randn(6, 4), labels, k=2) == 1.0
    assert knn_accuracy(z, torch.tensor([0, 1, 0, 1, 0, 1]), k=2) < 0.5


def test_collapse_is_claimed_only_after_the_alarm_step_and_the_warm_up():
    from ssl_pipeline.monitor import ALARM_AFTER_STEPS, collapse_claim_due

    flat, spread = {"embedding_std": 0.001}, {"embedding_std": 0.5}
    assert not collapse_claim_due(flat, ALARM_AFTER_STEPS - 1)
    assert collapse_claim_due(flat, ALARM_AFTER_STEPS) and not collapse_claim_due(spread, 10 * ALARM_AFTER_STEPS)
    assert not collapse_claim_due(flat, 150, warmup_steps=200) and collapse_claim_due(flat, 200, warmup_steps=200)


class NoisyInputs(LinearRegression):
    """`prepare` draws random noise (like view augmentations) and records where and when it ran."""

    def __init__(self):
        super().__init__()
        self.events, self.seen = [], []

    def prepare(self, batch):
        import threading
        import time

        self.events.append(("prepare", time.perf_counter(), threading.current_thread().name))
        return {**batch, "noise": torch.rand(len(batch["x"]), 1)}

    def loss(self, model, batch, accelerator):
        import time

        self.events.append(("loss start", time.perf_counter(), None))
        self.seen.append(batch["noise"].clone())
        time.sleep(0.02)  # a model step long enough for the next batch's work to start meanwhile
        self.events.append(("loss end", time.perf_counter(), None))
        err = model(batch["x"] + 0.01 * batch["noise"]) - batch["y"]
        return (err ** 2).mean(), {}


def test_prepare_runs_one_batch_ahead_in_a_thread_with_the_same_results(accelerator):
    """The views a run trains on do not depend on the overlap (seeded per batch), and with it batch k+1 is
    prepared on a background thread while batch k trains."""
    plan = TrainPlan(batch_size=32, epochs=2, max_steps=None, learning_rate=0.1, optimizer="sgd", log_every=4,
                     show_progress=False)
    inline, ahead = NoisyInputs(), NoisyInputs()
    torch.manual_seed(123)
    train(inline, plan, accelerator, seed=0)
    torch.manual_seed(456)  # the global RNG's history does not matter either
    train(ahead, TrainPlan(**{**plan.__dict__, "overlap": True}), accelerator, seed=0)
    assert len(inline.seen) == len(ahead.seen) == 16
    assert all(torch.equal(a, b) for a, b in zip(inline.seen, ahead.seen))
    assert not torch.equal(inline.seen[0], inline.seen[1])  # each batch has its own noise
    assert {t for kind, _, t in inline.events if kind == "prepare"} == {"MainThread"}
    assert all(t.startswith("prepare") for kind, _, t in ahead.events if kind == "prepare")
    # in the overlapped run, the next batch's prepare started before the current loss ended (within an epoch)
    starts = [t for kind, t, _ in ahead.events if kind == "prepare"]
    ends = [t for kind, t, _ in ahead.events if kind == "loss end"]
    assert sum(starts[k + 1] < ends[k] for k in range(7)) == 7
    # a different seed gives different noise
    other = NoisyInputs()
    train(other, TrainPlan(**{**plan.__dict__, "max_steps": 1}), accelerator, seed=1)
    assert not torch.equal(other.seen[0], inline.seen[0])


def test_an_empty_stream_is_an_error_not_a_hang(accelerator):
    class EmptyStream(LinearRegression):
        presharded = True

        def dataloader(self, batch_size, generator):
            return []

    plan = TrainPlan(batch_size=32, epochs=1, max_steps=5, learning_rate=0.1, optimizer="sgd", show_progress=False)
    with pytest.raises(UserError, match="the training data gave no batch"):
        train(EmptyStream(), plan, accelerator, seed=0)


def test_progress_lines_in_logs_come_per_5_percent_or_per_minute_never_in_pairs():
    import io

    from ssl_pipeline.progress import LineProgress

    now = [0.0]
    out = io.StringIO()
    bar = LineProgress(100, 0, "fixmatch", out, every_seconds=60.0, clock=lambda: now[0])
    for t, n in [(1, 3), (61, 1), (61.5, 2), (62, 2), (63, 1), (64, 91)]:  # a minute passes at 4 done, then work
        now[0] = t
        bar.update(n)
    bar.close()
    done = [int(line.split(": ")[1].split("/")[0]) for line in out.getvalue().splitlines()]
    # the minute's line at 4, the next 5 steps later (not at 6, right after it), then the end, once
    assert done == [4, 9, 100], out.getvalue()
    assert "fixmatch: 100/100 (100 %)" in out.getvalue() and "eta" not in out.getvalue().splitlines()[-1]

    slow = io.StringIO()
    grid = LineProgress(9, 0, "finetune grid", slow, clock=lambda: now[0])
    now[0] += 120
    grid.update(1)  # one cell in two minutes: not "0.01 it/s"
    assert "1/9 (11 %) [02:00 elapsed, 120.0 s/it, eta 16:00]" in slow.getvalue(), slow.getvalue()


def test_a_grid_counted_in_examples_says_so_and_its_eta_weighs_them():
    import io

    from ssl_pipeline.progress import LineProgress

    now = [0.0]
    out = io.StringIO()
    grid = LineProgress(40_000, 0, "finetune grid", out, clock=lambda: now[0], unit="examples")
    now[0] = 100.0
    grid.update(10_000)  # a quarter of the examples in 100 s: 300 s to go, whatever the cell count says
    assert "finetune grid: 10,000/40,000 examples (25 %) [01:40 elapsed, 100 examples/s, eta 05:00]" in out.getvalue()


def test_a_bar_given_a_new_end_lines_up_its_5_percent_with_it():
    import io

    from ssl_pipeline.progress import LineProgress, set_total

    out = io.StringIO()
    bar = LineProgress(100, 0, "pretrain", out, clock=lambda: 0.0)
    set_total(bar, 1000)  # a time budget measured again
    bar.update(10)  # 5 % of the old end, 1 % of the new: no line
    bar.update(40)
    assert out.getvalue().splitlines() == ["pretrain: 50/1000 (5 %) [00:00 elapsed, 0.00 it/s]"], out.getvalue()


def test_a_delayed_bar_says_nothing_for_short_work_and_reports_long_work_from_the_delay_on():
    import io

    from ssl_pipeline.progress import LineProgress

    now = [0.0]
    quick, slow = io.StringIO(), io.StringIO()
    bar = LineProgress(100, 0, "embedding", quick, clock=lambda: now[0], delay=10.0)
    for _ in range(100):  # all of it within 5 s: not a line, the end's included
        now[0] += 0.05
        bar.update(1)
    bar.close()
    assert quick.getvalue() == ""
    now[0] = 0.0
    bar = LineProgress(100, 0, "embedding", slow, clock=lambda: now[0], delay=10.0)
    for _ in range(100):  # 1 s an example: lines from 10 s on, and the end
        now[0] += 1.0
        bar.update(1)
    bar.close()
    done = [int(line.split(": ")[1].split("/")[0]) for line in slow.getvalue().splitlines()]
    assert done[0] == 10 and done[-1] == 100 and len(done) == 19, slow.getvalue()
    now[0] = 0.0
    nested = io.StringIO()  # a grid cell's bar under the grid's: past its delay, a line a minute, none at the end
    bar = LineProgress(150, 0, "cell", nested, clock=lambda: now[0], delay=60.0, minute_lines_only=True)
    for _ in range(150):
        now[0] += 1.0
        bar.update(1)
    bar.close()
    assert [line.split(" (")[0] for line in nested.getvalue().splitlines()] == ["cell: 60/150", "cell: 120/150"]


def test_a_grid_cell_shows_its_steps_only_once_it_lasts_a_minute(accelerator, capsys):
    """A labeled subset's cell is silent while short (most are) and shows steps when long (a 100 % cell of long
    texts: minutes that the grid's line, updated as each cell ends, would leave silent)."""
    from types import SimpleNamespace

    from ssl_pipeline.finetune.methods import CELL_PROGRESS_AFTER, plan_for

    ft = SimpleNamespace(batch_size=32, min_steps=1, epochs=2, max_steps=400, learning_rate=0.1, weight_decay=0.0,
                         checkpoint_every=0)
    cell = plan_for(256, ft, accelerator, "cell")
    assert cell.show_progress and cell.progress_after == CELL_PROGRESS_AFTER == 60.0 and cell.max_steps == 16
    pool = plan_for(256, ft, accelerator, "fixmatch", capped=False)
    assert pool.show_progress and pool.progress_after == 0.0
    capsys.readouterr()
    train(LinearRegression(), cell, accelerator, seed=0)  # well under a minute
    assert "cell:" not in capsys.readouterr().err
    train(LinearRegression(), TrainPlan(**{**cell.__dict__, "progress_after": 0.0}), accelerator, seed=0)
    err = capsys.readouterr().err  # the same cell as if past the delay: its steps, to the end
    assert "cell: 16/16 (100 %)" in err, err


class Memorising(LinearRegression):
    """A held-out loss scripted per evaluation step (falls, then rises as a memorising MLM's does); its export
    writes the step of the weights it was given."""

    held_out_loss = "eval_loss"
    SCRIPT = {2: 5.0, 4: 4.0, 6: 4.1, 8: 4.3, 10: 4.5, 12: 4.25, 14: 4.6, 16: 4.7}

    def __init__(self, script=None):
        super().__init__()
        self.script, self.step = script or self.SCRIPT, 0

    def after_optimizer_step(self, model, step, total_steps):
        self.step = step

    def evaluate(self, model, accelerator):
        return {"eval_loss": self.script.get(self.step, 9.0)}

    def export(self, model, path):
        path.mkdir(parents=True, exist_ok=True)
        (path / "step").write_text(str(self.step))


def _memorising_plan(**kw):
    return TrainPlan(**{**dict(batch_size=32, epochs=2, max_steps=None, learning_rate=0.1, optimizer="sgd",
                               log_every=2, eval_every=2, restore_best=True, early_stopping_patience=3,
                               show_progress=False), **kw})  # 16 steps planned


def test_a_memorising_run_stops_and_exports_the_encoder_of_its_lowest_held_out_loss(accelerator, tmp_path, capsys):
    """Lowest at step 4 (4.0); 4.1 is within the 0.2 margin, 4.3 / 4.5 / 4.25 are the three evaluations above it."""
    task = Memorising()
    row = train(task, _memorising_plan(), accelerator, seed=0, output_dir=tmp_path)
    assert row["step"] == 12 and task.step == 12  # not the 16 planned
    assert (tmp_path / "encoder" / "step").read_text() == "4" and row["encoder_from"] == {"step": 4, "eval_loss": 4.0}
    assert not (tmp_path / "best_encoder").exists()  # encoder/ holds it now
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert {"step": 12, "stopped_memorising": True} in rows
    assert "stopped at step 12 of 16: the held-out loss (4.25) has been 0.2 nats or more above its lowest (4.00, " \
           "step 4) for 3 evaluations in a row" in capsys.readouterr().out


def test_without_patience_a_memorising_run_trains_on_and_still_exports_its_best(accelerator, tmp_path):
    for run in "ab":
        (tmp_path / run).mkdir()
    task = Memorising()
    row = train(task, _memorising_plan(early_stopping_patience=0), accelerator, seed=0, output_dir=tmp_path / "a")
    assert row["step"] == 16 and (tmp_path / "a" / "encoder" / "step").read_text() == "4"
    # restore_best=false: the last weights, as before the option existed
    row = train(Memorising(), _memorising_plan(early_stopping_patience=0, restore_best=False), accelerator, seed=0,
                output_dir=tmp_path / "b")
    assert (tmp_path / "b" / "encoder" / "step").read_text() == "16" and "encoder_from" not in row
    assert not (tmp_path / "b" / "best_encoder").exists()


def test_a_run_that_ends_within_the_margin_of_its_lowest_exports_its_last_weights(accelerator, tmp_path):
    """A healthy run (falling, or a last evaluation less than 0.2 above the lowest) keeps the end of its schedule."""
    falling = {s: 6.0 - 0.1 * s for s in range(2, 17, 2)}
    for run in "ab":
        (tmp_path / run).mkdir()
    row = train(Memorising(falling), _memorising_plan(), accelerator, seed=0, output_dir=tmp_path / "a")
    assert row["step"] == 16 and (tmp_path / "a" / "encoder" / "step").read_text() == "16"
    wobbly = {**falling, 14: 4.0, 16: 4.15}
    row = train(Memorising(wobbly), _memorising_plan(), accelerator, seed=0, output_dir=tmp_path / "b")
    assert (tmp_path / "b" / "encoder" / "step").read_text() == "16" and "encoder_from" not in row


def test_early_stopping_resumes_with_its_count_and_kept_encoder(accelerator, tmp_path):
    """A crash at step 9 (after the step-8 checkpoint: lowest 4.0 at step 4, one evaluation above it) resumes to
    the same stop at step 12 and the same exported encoder; without the count in the checkpoint it would train on."""
    def crash_at_9(step, loss, acc):
        if step == 9:
            raise RuntimeError("preempted")
        return loss

    plan = _memorising_plan(checkpoint_every=4, keep_checkpoints=5)
    accelerator.free_memory()  # as the grid does between runs: a checkpoint holds this run's model alone
    with pytest.raises(RuntimeError):
        train(Memorising(), plan, accelerator, seed=0, output_dir=tmp_path, step_hooks=(crash_at_9,))
    assert (tmp_path / "best_encoder" / "step").read_text() == "4"
    from ssl_pipeline import checkpoint as ckpt

    saved = json.loads((ckpt.latest(tmp_path / "checkpoints") / ckpt.STATE_FILE).read_text())
    assert saved["step"] == 8 and saved["best_encoder"] == {"step": 4, "loss": 4.0, "above": 1, "last": 4.3}
    accelerator.free_memory()
    task = Memorising()
    row = train(task, plan, accelerator, seed=0, output_dir=tmp_path, resume=True)
    assert row["step"] == 12 and (tmp_path / "encoder" / "step").read_text() == "4"


def test_an_early_stop_is_one_decision_for_every_process(tmp_path):
    """2 processes whose evaluations disagree (tests/scripts/early_stop_dist.py): the main process's decides, both stop
    at step 10 of 32 — without it the other would train on alone and hang in DDP's next all-reduce."""
    import subprocess

    from conftest import ROOT, cli_env, launch_args

    cmd = launch_args(2)[:-1] + [str(ROOT / "tests/scripts/early_stop_dist.py"), str(tmp_path)]
    proc = subprocess.run(cmd, env=cli_env(), capture_output=True, text=True, timeout=240, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [(tmp_path / f"rank{r}").read_text() for r in (0, 1)] == ["10", "10"]


def test_a_small_corpus_is_evaluated_at_least_every_few_passes(accelerator, capsys):
    """8 steps a pass: with eval_every_passes=2 the held-out loss is read every 16 steps, not every 200 (a memorising
    run's lowest was otherwise missed by up to 100 passes); a task without a held-out loss keeps its steps."""
    calls = []

    class Recorded(Memorising):
        def evaluate(self, model, accelerator):
            calls.append(self.step)
            return super().evaluate(model, accelerator)

    falling = {s: 6.0 - 0.01 * s for s in range(1, 49)}
    plan = TrainPlan(batch_size=32, epochs=6, max_steps=None, learning_rate=0.1, optimizer="sgd", eval_every=200,
                     eval_every_passes=2, show_progress=False)
    train(Recorded(falling), plan, accelerator, seed=0)
    assert calls == [16, 32, 48]
    assert "a pass over the data is 8 step(s): evaluating every 16 steps (2 passes) instead of 200" in capsys.readouterr().out
    calls.clear()
    train(Recorded(falling), TrainPlan(**{**plan.__dict__, "eval_every_passes": 0}), accelerator, seed=0)
    assert calls == [48]  # the last step only
    calls.clear()
    Recorded.held_out_loss = None
    train(Recorded(falling), plan, accelerator, seed=0)
    assert calls == [48]
