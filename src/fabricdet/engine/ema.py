"""Exponential moving average of a model's weights (the weights a run publishes).

Detectors trained from scratch take noisy steps; the average of the recent weights is the
steadier model to publish, most of all from a run stopped mid-schedule (YOLOX, RTMDet and the
GFL family publish such averages). The decay warms up, ``min(decay, (1 + t) / (10 + t))``
after ``t`` updates, so that early in a run the average follows the weights instead of
remembering the random initialisation: the horizon grows from one step to
``1 / (1 - decay)`` steps.

Buffers (BatchNorm statistics) are copied, not averaged: they are already running averages.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn


class ModelEMA:
    """The moving average of ``model``'s floating-point parameters.

    Args:
        model: the trained module (not a DDP wrapper: its ``module``).
        decay: the decay after warm-up, in (0, 1).

    Attributes:
        module: a copy of ``model`` holding the average (eval mode, no gradients).
        updates: updates so far (drives the warm-up; saved with the state).
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.module = copy.deepcopy(model).eval().requires_grad_(False)
        self.updates = 0
        self._params = {name for name, _ in self.module.named_parameters()}

    def current_decay(self) -> float:
        """The decay of the next update (warm-up: see the module docstring)."""
        return min(self.decay, (1.0 + self.updates) / (10.0 + self.updates))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Fold ``model``'s current weights into the average (after each optimiser step)."""
        d = self.current_decay()
        self.updates += 1
        averaged = self.module.state_dict()
        for name, value in model.state_dict().items():
            target = averaged[name]
            if name in self._params:
                target.lerp_(value.detach(), 1.0 - d)
            else:
                target.copy_(value)

    def state_dict(self) -> dict[str, Any]:
        return {"module": self.module.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.module.load_state_dict(state["module"])
        self.updates = int(state["updates"])
