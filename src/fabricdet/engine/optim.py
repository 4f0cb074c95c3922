"""Optimiser and learning-rate schedule: AdamW, linear warm-up, cosine decay over the run.

The schedule follows the run's *progress* ``p`` in [0, 1]:

- a step budget alone: ``p = step / max_steps`` (deterministic, so a resumed run is exact);
- with a time budget as well (``fabricdet train --minutes M``): the same, as long as the
  remaining steps fit the remaining time at the rate measured so far, so a machine fast enough
  for the whole schedule trains exactly the run a step budget alone would (the clock cannot
  steer it, and the same seed gives the same model). Once they do not fit, the run re-plans
  to end on time: ``p = step / (step + remaining seconds * steps per second)``, so a run
  limited by the clock still decays its learning rate to the end and anneals SinkhornNMS' eps
  fully, instead of being cut off at the peak of the schedule. ``p`` never decreases (a
  machine that speeds up again does not raise the learning rate), and the clock counts
  training time across resumed sessions.

The same ``p`` goes to the model's ``set_epoch_progress``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from fabricdet.engine.config import TrainConfig


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW with weight decay on weight matrices and kernels only.

    Biases and normalisation scales (1-D parameters) are not decayed: shrinking them towards
    zero does not regularise the function and hurts normalised layers.
    """
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay, "base_lr": cfg.lr},
        {"params": no_decay, "weight_decay": 0.0, "base_lr": cfg.lr},
    ]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas)


def lr_factor(step: int, progress: float, cfg: TrainConfig) -> float:
    """Multiplier of the base learning rate: linear warm-up from ``warmup_factor`` to 1 over
    ``warmup_steps`` steps, times a cosine from 1 at ``progress`` 0 to ``min_lr_ratio`` at 1."""
    warm = 1.0
    if step < cfg.warmup_steps:
        warm = cfg.warmup_factor + (1.0 - cfg.warmup_factor) * step / cfg.warmup_steps
    cosine = 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return warm * (cfg.min_lr_ratio + (1.0 - cfg.min_lr_ratio) * cosine)


#: Steps of each session left out of the rate that plans a time-budgeted run: the first ones
#: pay for starting the data loader's workers and for first-call allocations.
SETTLE_STEPS = 20


class Schedule:
    """Progress of a run and the learning rate that follows it (see the module docstring).

    Args:
        cfg: step budget, warm-up and decay.
        budget_s: training-time budget in seconds, or None for a step budget alone.
        reserve_steps: with a time budget, the time of this many steps at the measured rate
            is held back from it for work that follows the training (the demo's evaluation,
            which costs about as many steps' time on fast and slow machines alike).
    """

    def __init__(
        self, cfg: TrainConfig, budget_s: float | None = None, reserve_steps: int = 0
    ) -> None:
        self.cfg = cfg
        self.budget_s = budget_s
        self.reserve_steps = reserve_steps
        self.trained_s = 0.0  # training time of all sessions so far
        self.floor = 0.0  # the progress reached so far: p never goes back
        self._session_steps = 0
        self._settled_s = 0.0  # time of this session's steps after its first SETTLE_STEPS

    def record(self, step: int, seconds: float) -> None:
        """Account a finished step (``step`` steps done) that took ``seconds``."""
        self.trained_s += seconds
        self._session_steps += 1
        if self._session_steps > SETTLE_STEPS:
            self._settled_s += seconds
        self.floor = self.progress(step)

    def progress(self, step: int) -> float:
        """``p`` in [0, 1] after ``step`` steps."""
        p = step / self.cfg.max_steps
        if self.budget_s is not None:
            left_s = self.budget_s - self.trained_s
            settled = self._session_steps - SETTLE_STEPS
            rate = settled / max(self._settled_s, 1e-9) if settled > 0 else None
            if rate is not None:
                left_s -= self.reserve_steps / rate
            if left_s <= 0:
                return 1.0
            if rate is not None and (self.cfg.max_steps - step) / rate > left_s:
                p = step / (step + left_s * rate)
        return min(1.0, max(p, self.floor))

    def done(self, step: int) -> bool:
        return self.progress(step) >= 1.0

    def apply(self, optimizer: torch.optim.Optimizer, step: int) -> float:
        """Set each parameter group's learning rate for the coming step; return the first."""
        factor = lr_factor(step, self.progress(step), self.cfg)
        for group in optimizer.param_groups:
            group["lr"] = group["base_lr"] * factor
        return float(optimizer.param_groups[0]["lr"])

    def state_dict(self) -> dict[str, Any]:
        return {"budget_s": self.budget_s, "trained_s": self.trained_s, "floor": self.floor}

    def load_state_dict(self, state: dict[str, Any], budget_s: float | None) -> None:
        """Restore the clock; a new ``budget_s`` (``--minutes`` given again on resume)
        replaces the saved one, and the progress it was planned by."""
        self.trained_s = float(state["trained_s"])
        self.budget_s = state["budget_s"]
        # "floor" is missing from checkpoints written before the re-planning schedule
        self.floor = float(state.get("floor", 0.0))
        if budget_s is not None and budget_s != self.budget_s:
            self.budget_s, self.floor = budget_s, 0.0
