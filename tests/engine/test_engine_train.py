"""Training loop: run folder contents, exact resume (clean stop and SIGKILL), stopping rules,
errors, TensorBoard, the ``fabricdet train`` command."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from engine_double import DoubleDetector, build_double
from engine_testdata import tiny

from fabricdet.cli import main
from fabricdet.data.formats import load_dataset
from fabricdet.engine import (
    ConfigError,
    TrainingError,
    load_config,
    load_model,
    train,
)
from fabricdet.engine import checkpoint as checkpoint_module
from fabricdet.engine.checkpoint import load_checkpoint
from fabricdet.engine.optim import SETTLE_STEPS, Schedule, lr_factor
from fabricdet.errors import DataError

HERE = Path(__file__).parent


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / "model.pt", weights_only=True)["model"]


def _assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=0, atol=1e-6, msg=k)


def test_run_folder_holds_model_config_and_checkpoint(synth, tmp_path):
    seen: list[float] = []

    def factory(cfg, num_classes):
        model = DoubleDetector(cfg, num_classes)
        model.set_epoch_progress = seen.append  # type: ignore[method-assign]
        return model

    cfg = tiny("train.max_steps=4")
    path = train(cfg, synth, tmp_path / "run", model_factory=factory, progress=False)
    assert path == tmp_path / "run" / "model.pt"
    assert load_config(tmp_path / "run" / "config.yaml") == cfg
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt")["step"] == 4
    loaded = load_model(path, factory=build_double)
    assert loaded.step == 4 and loaded.config == cfg and loaded.categories == synth.categories
    assert not loaded.model.training
    assert seen == [0.0, 0.25, 0.5, 0.75]  # annealing progress, once per step


def test_stop_and_resume_equals_uninterrupted(synth, tmp_path):
    # The reference loads with a worker process, the interrupted run in-process: the batches,
    # flips and random draws must not depend on either.
    ref = tiny("train.max_steps=6", "data.num_workers=1")
    train(ref, synth, tmp_path / "ref", model_factory=build_double, progress=False)
    cfg = tiny("train.max_steps=6", "train.checkpoint_every=4")
    train(
        cfg, synth, tmp_path / "cut", model_factory=build_double, stop_after_steps=3, progress=False
    )
    assert load_checkpoint(tmp_path / "cut" / "checkpoint.pt")["step"] == 3
    train(None, synth, tmp_path / "cut", resume=True, progress=False)  # builder from the file
    assert load_checkpoint(tmp_path / "cut" / "checkpoint.pt")["step"] == 6
    _assert_same_weights(tmp_path / "ref", tmp_path / "cut")


_CHILD = """
import sys
sys.path.insert(0, {here!r})
from engine_double import build_slow_double
from fabricdet.data.formats import load_dataset
from fabricdet.engine import apply_overrides, preset, train
cfg = apply_overrides(preset("tiny"), sys.argv[3:])
train(cfg, load_dataset(sys.argv[1]), sys.argv[2], model_factory=build_slow_double, progress=False)
"""


def test_sigkill_then_resume_equals_uninterrupted(synth, tmp_path):
    data = load_dataset(synth.root)
    overrides = ["train.max_steps=10", "train.checkpoint_every=2"]
    run = tmp_path / "killed"
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD.format(here=str(HERE)), str(synth.root), str(run), *overrides]
    )
    try:
        deadline = time.monotonic() + 120
        while not (run / "checkpoint.pt").exists():
            assert child.poll() is None, "training process ended early"
            assert time.monotonic() < deadline, "no checkpoint within 2 minutes"
            time.sleep(0.05)
        os.kill(child.pid, signal.SIGKILL)  # mid-run: 8 slow steps are left
    finally:
        child.wait()
    killed_at = load_checkpoint(run / "checkpoint.pt")["step"]
    assert 2 <= killed_at < 10 and not (run / "model.pt").exists()
    train(None, data, run, resume=True, model_factory=build_double, progress=False)
    ref = tmp_path / "ref"
    train(tiny(*overrides), data, ref, model_factory=build_double, progress=False)
    _assert_same_weights(ref, run)


def test_time_budget_stops_the_run_and_carries_over_on_resume(synth, tmp_path):
    cfg, run = tiny("train.max_steps=4"), tmp_path / "r"
    train(cfg, synth, run, model_factory=build_double, minutes=1e-9, progress=False)
    assert load_model(run, factory=build_double).step == 1  # budget spent after one step
    train(cfg, synth, run, resume=True, progress=False)
    assert load_model(run, factory=build_double).step == 1  # still spent: nothing to do
    train(cfg, synth, run, resume=True, minutes=60.0, progress=False)  # a larger budget
    assert load_model(run, factory=build_double).step == 4
    assert load_checkpoint(run / "checkpoint.pt")["scheduler"]["budget_s"] == 3600.0


def test_schedule_follows_steps_or_the_clock():
    cfg = tiny("train.max_steps=100", "train.warmup_steps=10", "train.min_lr_ratio=0.1").train
    assert lr_factor(0, 0.0, cfg) == pytest.approx(cfg.warmup_factor)
    assert lr_factor(10, 0.0, cfg) == pytest.approx(1.0)
    assert lr_factor(50, 0.5, cfg) == pytest.approx(0.55)
    assert lr_factor(100, 1.0, cfg) == pytest.approx(0.1)
    by_steps, by_clock = Schedule(cfg), Schedule(cfg, budget_s=100.0)
    assert by_steps.progress(20) == 0.2 and not by_steps.done(99) and by_steps.done(100)
    # 0.5 s per step: the 60 steps left fit the 50 s left, so the clock does not steer (the
    # settling steps' slow start does not count)
    for step in range(1, 41):
        by_clock.record(step, 2.0 if step <= SETTLE_STEPS else 0.5)
    assert by_clock.trained_s == 50.0
    assert by_clock.progress(40) == 0.4  # as by steps alone, though half the budget is spent
    # 5 s per step from now on: the 55 steps left no longer fit the 25 s left; the run
    # re-plans to end when the budget does
    for step in range(41, 46):
        by_clock.record(step, 5.0)
    rate = 25 / 35.0  # settled steps per second
    assert by_clock.progress(45) == pytest.approx(45 / (45 + 25 * rate))
    assert not by_clock.done(45)
    # progress never goes back: a faster step afterwards keeps p where it was
    by_clock.record(46, 0.0)
    assert by_clock.progress(46) >= by_clock.progress(45)
    by_clock.record(47, 30.0)
    assert by_clock.trained_s >= 100.0 and by_clock.done(47)
    resumed = Schedule(cfg, budget_s=None)
    resumed.load_state_dict(by_clock.state_dict(), None)
    assert resumed.budget_s == 100.0 and resumed.done(47)


def test_schedule_holds_back_the_reserve_from_the_budget():
    """The time of ``reserve_steps`` steps at the measured rate is not the training's."""
    cfg = tiny("train.max_steps=100").train
    plain, reserved = Schedule(cfg, budget_s=100.0), Schedule(cfg, budget_s=100.0, reserve_steps=40)
    steps = SETTLE_STEPS + 10
    for step in range(1, steps + 1):  # 1 s per step
        plain.record(step, 1.0)
        reserved.record(step, 1.0)
    # 70 s left: the 70 steps left fit it, but not the 30 s left after 40 steps' reserve
    assert plain.progress(steps) == steps / 100
    assert reserved.progress(steps) == pytest.approx(steps / (steps + 30))
    for step in range(steps + 1, 61):
        reserved.record(step, 1.0)
    assert reserved.done(60) and not plain.done(60)


def test_run_folder_errors(synth, tmp_path):
    cfg = tiny("train.max_steps=1")
    with pytest.raises(TrainingError, match=r"no checkpoint\.pt to resume"):
        train(cfg, synth, tmp_path / "r", model_factory=build_double, resume=True)
    train(cfg, synth, tmp_path / "r", model_factory=build_double, progress=False)
    with pytest.raises(TrainingError, match=r"already holds a training run.*--resume"):
        train(cfg, synth, tmp_path / "r", model_factory=build_double)
    with pytest.raises(ConfigError, match=r"train\.max_steps: 1 -> 5"):
        train(tiny("train.max_steps=5"), synth, tmp_path / "r", resume=True)
    with pytest.raises(DataError, match="split 'nope' has no images"):
        train(tiny("data.train_split=nope"), synth, tmp_path / "s", model_factory=build_double)


class _Diverging(DoubleDetector):
    def forward(self, images, targets=None):
        out = super().forward(images, targets)
        return {k: v * float("nan") for k, v in out.items()} if self.training else out


def test_non_finite_loss_is_a_clear_error(synth, tmp_path):
    with pytest.raises(TrainingError, match=r"not finite at step 1.*train\.lr"):
        train(tiny(), synth, tmp_path / "r", model_factory=_Diverging, progress=False)


class _NanGradient(DoubleDetector):
    def forward(self, images, targets=None):
        out = super().forward(images, targets)
        if not self.training:
            return out
        # finite (0) forward, NaN backward: log's gradient at 0 times the unselected branch's 0
        weight = next(self.parameters()).sum()
        out["trap"] = torch.where(torch.tensor(False), (0 * weight).log(), torch.tensor(0.0))
        return out


def test_non_finite_gradient_is_a_clear_error_before_the_weights_change(synth, tmp_path):
    with pytest.raises(TrainingError, match=r"gradients are not finite at step 1.*not updated"):
        train(tiny(), synth, tmp_path / "r", model_factory=_NanGradient, progress=False)


def test_tensorboard_scalars(synth, tmp_path):
    cfg = tiny("train.max_steps=2", "train.tensorboard=true")
    train(cfg, synth, tmp_path / "r", model_factory=build_double, progress=False)
    assert list((tmp_path / "r" / "tb").glob("events.out.tfevents.*"))


def test_train_command_with_resume(synth, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(checkpoint_module, "DEFAULT_FACTORY", "engine_double:build_double")
    out = tmp_path / "run"
    args = ["train", str(synth.root), "--out", str(out), "--preset", "tiny", "--quiet"]
    assert main([*args[:2], "train.max_steps=3", *args[2:], "--minutes", "1e-9"]) == 0
    assert f"model: {out / 'model.pt'}" in capsys.readouterr().out
    assert load_model(out).step == 1
    resume = ["--resume", "--minutes", "60", "--quiet"]
    assert main(["train", str(synth.root), "--out", str(out), *resume]) == 0
    assert load_model(out).step == 3
    assert main(["train", str(synth.root), "--out", str(out), "train.max_stepz=3"]) == 2
    assert "did you mean train.max_steps" in capsys.readouterr().err
