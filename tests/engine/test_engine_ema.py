"""The moving average of the weights: its arithmetic, and that model.pt publishes it; model
files from before a setting existed."""

from __future__ import annotations

import pytest
import torch
from engine_double import build_double
from engine_testdata import tiny
from torch import nn

from fabricdet.engine import load_model, train
from fabricdet.engine.checkpoint import load_checkpoint, save_checkpoint
from fabricdet.engine.ema import ModelEMA


def _net() -> nn.Module:
    return nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))


def test_average_follows_the_warmed_up_decay() -> None:
    net = _net()
    ema = ModelEMA(net, decay=0.5)
    w0 = net[0].weight.detach().clone()
    with torch.no_grad():
        net[0].weight.add_(1.0)
        net[1].running_mean.fill_(7.0)
    assert ema.current_decay() == pytest.approx(0.1)  # (1 + 0) / (10 + 0): follows at first
    ema.update(net)
    torch.testing.assert_close(ema.module[0].weight, 0.1 * w0 + 0.9 * (w0 + 1.0))
    # Buffers are copied (BatchNorm statistics are running averages already).
    assert torch.equal(ema.module[1].running_mean, torch.full((2,), 7.0))
    for _ in range(50):
        ema.update(net)
    assert ema.current_decay() == 0.5  # the cap after warm-up
    torch.testing.assert_close(ema.module[0].weight, w0 + 1.0)  # converged on fixed weights
    assert not any(p.requires_grad for p in ema.module.parameters())


def test_state_round_trip() -> None:
    net = _net()
    ema = ModelEMA(net, decay=0.9)
    with torch.no_grad():
        net[0].bias.add_(2.0)
    for _ in range(3):
        ema.update(net)
    other = ModelEMA(_net(), decay=0.9)
    other.load_state_dict(ema.state_dict())
    assert other.updates == 3
    torch.testing.assert_close(other.module[0].bias, ema.module[0].bias)


def test_bad_decay_is_refused() -> None:
    with pytest.raises(ValueError, match="decay"):
        ModelEMA(_net(), decay=1.0)


def _published_and_last(run) -> tuple[dict, dict]:
    published = torch.load(run / "model.pt", weights_only=True)["model"]
    return published, load_checkpoint(run / "checkpoint.pt")["model"]


def test_model_file_holds_the_average_and_zero_turns_it_off(synth, tmp_path) -> None:
    train(tiny("train.max_steps=4", "train.ema_decay=0"), synth, tmp_path / "off",
          model_factory=build_double, progress=False)  # fmt: skip
    published, last = _published_and_last(tmp_path / "off")
    assert all(torch.equal(published[k], last[k]) for k in last)

    train(tiny("train.max_steps=4", "train.ema_decay=0.9"), synth, tmp_path / "on",
          model_factory=build_double, progress=False)  # fmt: skip
    published, last = _published_and_last(tmp_path / "on")
    assert published.keys() == last.keys()
    floats = [k for k in last if last[k].is_floating_point()]
    assert any(not torch.equal(published[k], last[k]) for k in floats)


def test_resuming_a_checkpoint_without_an_average_starts_one(synth, tmp_path) -> None:
    run = tmp_path / "run"
    cfg = tiny("train.max_steps=6", "train.checkpoint_every=4")
    train(cfg, synth, run, model_factory=build_double, stop_after_steps=3, progress=False)
    state = load_checkpoint(run / "checkpoint.pt")
    del state["ema"]  # as written before the average existed
    save_checkpoint(run / "checkpoint.pt", state)
    train(None, synth, run, resume=True, model_factory=build_double, progress=False)
    assert load_checkpoint(run / "checkpoint.pt")["ema"]["updates"] == 3  # steps 4-6


def test_a_model_saved_before_the_texture_channel_loads_without_it(synth, tmp_path) -> None:
    run = tmp_path / "old"
    train(tiny("train.max_steps=1", "model.texture_input=false"), synth, run, progress=False)
    saved = torch.load(run / "model.pt", weights_only=True)
    del saved["config"]["model"]["texture_input"]  # as written before the key existed
    torch.save(saved, run / "model.pt")
    loaded = load_model(run / "model.pt")
    assert loaded.config.model.texture_input is False
    assert len(loaded.model([torch.rand(3, 64, 96)])) == 1
