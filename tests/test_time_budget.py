"""pretrain.max_minutes: the step count planned from measured steps, measured again after the warm-up, kept
across a resume and extended with the budget. A fake clock that the task advances makes the timing exact. (Two
processes planning the same steps: test_pretrain_vision.py, in its 2-process launch.)"""
import shutil

import pytest
import torch
from torch import nn

from ssl_pipeline import checkpoint as ckpt
from ssl_pipeline import time_budget
from ssl_pipeline.config import load_config
from ssl_pipeline.engine import TrainPlan, _Batches, _Passes, make_accelerator, train

from test_engine import LinearRegression


COST = 2 ** -6  # seconds: exact in binary, so the planned counts are exact


class Clock:
    t = 0.0


class Timed(LinearRegression):
    """Each forward/backward pass costs `pass_cost` seconds of the fake clock, each optimizer step `step_cost` more
    (what a measurement without the optimizer misses)."""

    def __init__(self, clock, pass_cost=COST, step_cost=0.0):
        super().__init__()
        self.clock, self.pass_cost, self.step_cost = clock, pass_cost, step_cost

    def loss(self, model, batch, accelerator):
        self.clock.t += self.pass_cost
        return super().loss(model, batch, accelerator)

    def after_optimizer_step(self, model, step, total_steps):
        self.clock.t += self.step_cost
        super().after_optimizer_step(model, step, total_steps)


@pytest.fixture(scope="module")
def accelerator():
    return make_accelerator(load_config(None, ["threads=1"]))


@pytest.fixture
def clock(monkeypatch):
    c = Clock()
    monkeypatch.setattr(time_budget, "clock", lambda device: c.t)
    return c


PLAN = dict(batch_size=32, epochs=1, max_steps=None, learning_rate=0.1, optimizer="sgd", log_every=5,
            warmup_fraction=0.05, show_progress=False, max_seconds=2.0)


def test_steps_are_planned_from_measured_steps_and_the_schedule_ends_with_the_time(accelerator, clock, capsys):
    task = Timed(clock)
    row = train(task, TrainPlan(**PLAN), accelerator, seed=0)
    # 10 measuring passes (10/64 s), then 1/64 s a step: 118 steps fill 2 s, whatever 1 epoch of 8 steps says
    assert row["step"] == 118 and task.seen_steps[-1] == (118, 118) and clock.t == 2.0
    assert row["lr"] < 1e-3 * PLAN["learning_rate"]  # the cosine ran to its end
    out = capsys.readouterr().out
    assert "pretrain.max_minutes=0.0333: 0.0156 s a step (measured over 8 steps) → 118 steps (14.8 passes" in out
    assert "trained 118 steps in 2.0 s of pretrain.max_minutes=0.0333" in out
    assert "fewer than pretrain.min_steps" not in out


def test_a_budget_below_the_step_floor_says_so(accelerator, clock, capsys):
    row = train(Timed(clock), TrainPlan(**{**PLAN, "min_steps": 1000}), accelerator, seed=0)
    assert row["step"] == 118  # the budget wins; the floor only speaks
    assert ("note: that is fewer than pretrain.min_steps=1,000, the floor below which small data was measured to "
            "learn little (README 'Small data'); about 1 minute would train 1,000 steps") in capsys.readouterr().out


def test_the_plan_follows_the_pace_of_real_steps_after_the_warmup(accelerator, clock, capsys):
    task = Timed(clock, step_cost=COST)  # real steps take twice what the measuring passes took
    row = train(task, TrainPlan(**PLAN), accelerator, seed=0)
    # measured again at step 20: 50/64 s spent, 78/64 left at 2/64 a step -> 39 more
    assert row["step"] == 59 and clock.t == 2.0
    assert [t for _, t in task.seen_steps] == [118] * 20 + [59] * 39
    assert "time budget measured again at step 20: 0.0312 s a step → 59 steps (planned 118)" in capsys.readouterr().out


def test_a_short_plan_is_measured_again_halfway(accelerator, clock, capsys):
    """A plan shorter than 40 steps is still corrected by the real pace (a measurement taken under load would
    otherwise leave time unused, or overrun it)."""
    task = Timed(clock, step_cost=COST)
    row = train(task, TrainPlan(**{**PLAN, "max_seconds": 0.5}), accelerator, seed=0)
    # 10 measuring passes (10/64 s) leave 22/64 s: 22 steps planned; at step 11 the 2/64 s steps have used it all
    assert row["step"] == 12 and [t for _, t in task.seen_steps] == [22] * 11 + [12]
    assert "time budget measured again at step 11: 0.0312 s a step → 12 steps (planned 22)" in capsys.readouterr().out


def test_measuring_leaves_weights_buffers_and_gradients_as_they_were(accelerator):
    class WithNorm(LinearRegression):
        def __init__(self):
            super().__init__()
            self.model = nn.Sequential(nn.Linear(1, 4), nn.BatchNorm1d(4), nn.Linear(4, 1))

    task = WithNorm()
    before = {k: v.clone() for k, v in task.model.state_dict().items()}
    plan = TrainPlan(**PLAN)
    model = accelerator.prepare(task.model)
    batches = _Batches(task, plan, accelerator, 0, False)
    with _Passes(task, model, plan, accelerator, 0, batches) as measure:
        measure(2, 3)
    batches.close()
    after = accelerator.unwrap_model(model).state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # BatchNorm's running statistics included
    assert all(p.grad is None for p in model.parameters())


def test_a_resumed_run_ends_where_the_uninterrupted_one_does(accelerator, clock, tmp_path):
    plan = TrainPlan(**{**PLAN, "checkpoint_every": 10, "keep_checkpoints": 20})
    accelerator.free_memory()  # as the grid does between cells: a checkpoint holds this run's model alone
    first = Timed(clock, step_cost=COST)
    done = train(first, plan, accelerator, seed=0, output_dir=tmp_path)
    accelerator.free_memory()
    weights = {k: v.clone() for k, v in first.model.state_dict().items()}
    for late in ckpt.complete(tmp_path / "checkpoints")[1:]:  # back to step 10, before the second measurement
        shutil.rmtree(late)
    clock.t += 100.0  # the time between the crash and the resume is not the run's
    again = Timed(clock, step_cost=COST)
    resumed = train(again, plan, accelerator, seed=0, output_dir=tmp_path, resume=True)
    assert resumed["step"] == done["step"] == 59 and again.seen_steps[0] == (11, 118)
    assert all(torch.equal(weights[k], v) for k, v in again.model.state_dict().items())


def test_a_finished_run_given_more_minutes_goes_on_for_the_extra_time(accelerator, clock, tmp_path, capsys):
    plan = TrainPlan(**{**PLAN, "checkpoint_every": 50})
    accelerator.free_memory()
    train(Timed(clock, step_cost=COST), plan, accelerator, seed=0, output_dir=tmp_path)
    accelerator.free_memory()
    more = Timed(clock, step_cost=COST)
    row = train(more, TrainPlan(**{**plan.__dict__, "max_seconds": 3.0}), accelerator, seed=0, output_dir=tmp_path,
                resume=True)
    assert row["step"] == 59 + 32 and more.seen_steps[0] == (60, 91)  # 1 s more at 2/64 s a step
    assert "pretrain.max_minutes changed from 0.0333 to 0.05: training to step 91" in capsys.readouterr().out


def test_a_stream_trains_for_its_minutes_without_a_step_count(tmp_path, capsys):
    """A stream has no epoch length: a time budget is enough (the refusal names both keys)."""
    from conftest import one_line_error
    from ssl_pipeline.cli import pretrain_main
    from test_shards import _parquet_images

    files = _parquet_images(tmp_path, n=64, shards=2)
    out = tmp_path / "run"
    args = ["--config", "configs/vision/simclr_digits.yaml", "data.source=hf", f"data.files=[{','.join(map(str, files))}]",
            "data.streaming=true", "data.image_size=12", f"output_dir={out}", "pretrain.batch_size=8",
            "model.projection_hidden_dim=32", "data.shuffle_buffer=8", "pretrain.monitor_every=0"]
    one_line_error(pretrain_main, args, capsys, "needs pretrain.max_steps or pretrain.max_minutes")
    pretrain_main(args + ["pretrain.max_minutes=0.1"])
    assert (out / "encoder" / "model.safetensors").is_file() and " steps in " in capsys.readouterr().out


@pytest.mark.parametrize("value", ["0", "-5", "inf"])
def test_a_budget_must_be_a_positive_number_of_minutes(value):
    from ssl_pipeline.errors import UserError

    with pytest.raises(UserError, match="'pretrain.max_minutes' must be a positive number of minutes"):
        load_config(None, [f"pretrain.max_minutes={value}"])


def test_periodic_checks_are_paid_from_the_budget(accelerator, clock):
    """An evaluation every 25 steps costing 8 steps' time: measured in windows of 25 steps, the run still ends
    with the budget (a plan made once, after the warm-up, would overrun by every evaluation)."""

    class Evaluated(Timed):
        def after_optimizer_step(self, model, step, total_steps):
            super().after_optimizer_step(model, step, total_steps)
            if step % 25 == 0:
                self.clock.t += 8 * COST

    task = Evaluated(clock, step_cost=COST)
    row = train(task, TrainPlan(**{**PLAN, "max_seconds": 4.0, "eval_every": 25}), accelerator, seed=0)
    once = 20 + (4.0 - (10 + 2 * 20) * COST) / (2 * COST)  # the count planned at step 20 (no evaluation seen yet)
    assert row["step"] < once - 5
    assert abs(clock.t - 4.0) <= 8 * COST  # within one evaluation's time


def test_the_encoder_record_says_the_budget():
    from ssl_pipeline.pretraining_record import describe

    record = {"steps": 501, "epochs": 5.6, "examples": 5785, "unit": "packed token blocks", "max_minutes": 8,
              "init_from": None, "final": {}}
    assert describe(record) == ("pretrained for 501 steps (5.6 passes over 5,785 packed token blocks) within a budget "
                                "of 8 minutes from random weights")
