"""The training loop: single process or ``torchrun`` DDP, resumable to the step.

``train(cfg, dataset, out_dir)`` leaves in ``out_dir``:

- ``config.yaml``: the resolved config (written first, so a run folder always explains itself);
- ``checkpoint.pt``: the full training state every ``train.checkpoint_every`` steps and when
  the run stops (model, optimiser, scheduler, gradient scaler, step, random states, sampler
  position), written atomically; ``resume=True`` continues from it exactly: the same batches,
  flips and random draws as a run that was never interrupted;
- ``model.pt``: weights (their moving average unless ``train.ema_decay=0``, see
  :mod:`fabricdet.engine.ema`) + config + category map (see :mod:`fabricdet.engine.checkpoint`);
- ``tb/``: TensorBoard scalars (losses, learning rate) when tensorboard is installed.

The run stops at ``train.max_steps``, when a ``minutes`` training-time budget is spent (a
run that would not finish its steps in time re-plans its schedule to end on time, see
:mod:`fabricdet.engine.optim`), or after ``stop_after_steps`` steps of this session, whichever
comes first. A resumed run continues exactly when it is scheduled by steps, or by a time budget
its steps fit; a run the clock re-planned follows the clock, which no run repeats.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Mapping
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from fabricdet.data.dataset import DetectionDataset
from fabricdet.engine.checkpoint import (
    MODEL_FILE,
    ModelFactory,
    capture_rng,
    categories_from_list,
    categories_to_list,
    default_factory,
    factory_name,
    load_checkpoint,
    resolve_factory,
    restore_rng,
    save_checkpoint,
    save_model_file,
)
from fabricdet.engine.config import ConfigError, RunConfig, validate
from fabricdet.engine.config_io import save_config, saved_config, to_dict
from fabricdet.engine.data import (
    Batch,
    TorchDetectionDataset,
    collate,
    seed_worker,
    select_split,
    worker_context,
)
from fabricdet.engine.distributed import (
    DistInfo,
    any_rank,
    barrier,
    init_distributed,
    max_over_ranks,
    shutdown,
)
from fabricdet.engine.ema import ModelEMA
from fabricdet.engine.monitor import Progress, ScalarWriter, open_tensorboard
from fabricdet.engine.optim import Schedule, build_optimizer
from fabricdet.engine.sampler import RepeatFactorBatchSampler, repeat_factors
from fabricdet.errors import FabricdetError

CHECKPOINT_FILE = "checkpoint.pt"
CONFIG_FILE = "config.yaml"
TENSORBOARD_DIR = "tb"


class TrainingError(FabricdetError):
    """Training cannot start or continue (bad run folder, diverged loss, bad model output)."""


def _flat(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, Mapping):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _resume_config(given: RunConfig | None, saved: RunConfig, out_dir: Path) -> RunConfig:
    """The saved config; a different ``given`` one is an error (a resumed run that changed its
    schedule or data would not be the run it claims to continue)."""
    if given is None:
        return saved
    a, b = _flat(to_dict(saved)), _flat(to_dict(given))
    diff = [f"{k}: {a[k]!r} -> {b[k]!r}" for k in a if a[k] != b.get(k)]
    if diff:
        raise ConfigError(
            f"{out_dir}: --resume keeps the run's own config, but the given one differs "
            f"({'; '.join(diff)}); resume without a preset or overrides, or train into a new "
            "--out folder"
        )
    return saved


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _to_device(batch: Batch, device: torch.device) -> tuple[list[Tensor], list[dict[str, Tensor]]]:
    non_blocking = device.type == "cuda"
    images = [im.to(device, non_blocking=non_blocking) for im in batch.images]
    targets = [
        {k: v.to(device, non_blocking=non_blocking) for k, v in t.items()} for t in batch.targets
    ]
    return images, targets


class _Trainer:
    """The state of one training session (one process of a possibly distributed job)."""

    def __init__(
        self,
        cfg: RunConfig,
        dataset: DetectionDataset,
        out_dir: Path,
        info: DistInfo,
        factory: ModelFactory,
        factory_id: str,
        budget_s: float | None,
        reserve_steps: int = 0,
    ) -> None:
        self.cfg, self.out_dir, self.info = cfg, out_dir, info
        self.factory_id = factory_id
        self.categories = dataset.categories
        self.train_set = select_split(dataset, cfg.data.train_split)
        _seed_everything(cfg.train.seed)  # identical initial weights on every rank
        self.model: nn.Module = factory(cfg.model, dataset.num_classes).to(info.device)
        self.optimizer = build_optimizer(self.model, cfg.train)
        # Every rank holds the same weights after each step, so the same average.
        decay = cfg.train.ema_decay
        self.ema = ModelEMA(self.model, decay) if decay > 0 else None
        self.budget_s = budget_s
        self.schedule = Schedule(cfg.train, budget_s, reserve_steps)
        self.use_amp = cfg.train.amp and info.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp)
        self.step = 0
        self.net: nn.Module = self.model
        if info.distributed:
            device_ids = [info.device.index] if info.device.type == "cuda" else None
            self.net = DistributedDataParallel(
                self.model,
                device_ids=device_ids,
                find_unused_parameters=cfg.train.find_unused_parameters,
            )

    # -- state ---------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.schedule.state_dict(),
            "scaler": self.scaler.state_dict(),
            "step": self.step,
            "config": to_dict(self.cfg),
            "categories": categories_to_list(self.categories),
            "factory": self.factory_id,
            "rng": capture_rng(),
            "sampler": {"batches": self.step, "world_size": self.info.world_size},
            "ema": None if self.ema is None else self.ema.state_dict(),
        }

    def load(self, ckpt: dict[str, Any], path: Path) -> None:
        if categories_from_list(ckpt["categories"]) != self.categories:
            raise TrainingError(
                f"{path}: the checkpoint was trained on other categories than this dataset's; "
                "resume with the dataset the run started with"
            )
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.schedule.load_state_dict(ckpt["scheduler"], self.budget_s)
        self.scaler.load_state_dict(ckpt["scaler"])
        self.step = int(ckpt["step"])
        restore_rng(ckpt["rng"])
        if self.ema is not None:
            if ckpt.get("ema") is not None:
                self.ema.load_state_dict(ckpt["ema"])
            else:  # a checkpoint from before averaging existed: start it from these weights
                self.ema = ModelEMA(self.model, self.ema.decay)

    def save_checkpoint(self) -> None:
        if self.info.is_main:
            save_checkpoint(self.out_dir / CHECKPOINT_FILE, self.state())

    def save_model(self) -> None:
        if self.info.is_main:
            save_model_file(
                self.out_dir / MODEL_FILE,
                self.model if self.ema is None else self.ema.module,
                self.cfg,
                self.categories,
                self.factory_id,
                self.step,
            )

    # -- data ----------------------------------------------------------------------------
    def loader(self) -> torch.utils.data.DataLoader:
        d, t = self.cfg.data, self.cfg.train
        sampler = RepeatFactorBatchSampler(
            repeat_factors(self.train_set, d.rfs_threshold),
            t.batch_size,
            t.seed,
            self.info.rank,
            self.info.world_size,
            start_batch=self.step,
        )
        # Its own generator: creating the iterator must not draw from the global torch RNG,
        # or a resumed run's random stream would differ from an uninterrupted one's.
        gen = torch.Generator().manual_seed(t.seed + self.info.rank)
        return torch.utils.data.DataLoader(
            TorchDetectionDataset(self.train_set, d),
            batch_sampler=sampler,  # type: ignore[arg-type]  # yields lists of (index, seed)
            num_workers=d.num_workers,
            collate_fn=collate,
            worker_init_fn=seed_worker,
            generator=gen,
            pin_memory=self.info.device.type == "cuda",
            multiprocessing_context=worker_context(d.num_workers),
        )

    # -- one step ------------------------------------------------------------------------
    def train_step(self, batch: Batch) -> dict[str, float]:
        t = self.cfg.train
        if hasattr(self.model, "set_epoch_progress"):
            self.model.set_epoch_progress(self.schedule.progress(self.step))
        lr = self.schedule.apply(self.optimizer, self.step)
        images, targets = _to_device(batch, self.info.device)
        autocast = torch.autocast("cuda", dtype=torch.float16) if self.use_amp else nullcontext()
        with autocast:
            losses = self.net(images, targets)
        if not isinstance(losses, Mapping) or not losses:
            raise TrainingError(
                f"the model returned {type(losses).__name__} in train mode; a detector must "
                "return a dict of named scalar losses"
            )
        loss = sum(v.float() for v in losses.values())
        values = {k: float(v.detach()) for k, v in losses.items()}
        total = float(loss.detach())
        # All ranks must agree, or the healthy ones would wait forever in the next all-reduce.
        if any_rank(self.info, not math.isfinite(total)):
            raise TrainingError(
                f"loss is not finite at step {self.step + 1} ({values}); lower train.lr or "
                f"set train.grad_clip, then resume from {self.out_dir / CHECKPOINT_FILE} "
                "with --resume or start again"
            )
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if t.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), t.grad_clip)
            values["grad_norm"] = float(grad_norm)
            # A finite loss can still have a NaN gradient, which the step would write into every
            # weight. Under AMP the scaler skips such steps itself; DDP's ranks share the
            # all-reduced gradients, so they all stop here together.
            if not self.use_amp and not math.isfinite(values["grad_norm"]):
                raise TrainingError(
                    f"gradients are not finite at step {self.step + 1} ({values}); the weights "
                    f"were not updated: resume from {self.out_dir / CHECKPOINT_FILE} with "
                    "--resume after lowering train.lr, or report the losses above as a bug"
                )
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.ema is not None:
            self.ema.update(self.model)
        self.step += 1
        values["loss"] = total
        values["lr"] = lr
        return values


def _log(writer: ScalarWriter | None, step: int, values: dict[str, float]) -> None:
    if writer is None:
        return
    for k, v in values.items():
        tag = k if k in ("loss", "grad_norm", "lr") else f"loss/{k}"
        writer.add_scalar(f"train/{tag}", v, step)


def _prepare_out_dir(out_dir: Path, resume: bool) -> None:
    if resume:
        if not (out_dir / CHECKPOINT_FILE).is_file():
            raise TrainingError(
                f"{out_dir}: no {CHECKPOINT_FILE} to resume from; train without --resume "
                "to start the run"
            )
    elif (out_dir / CHECKPOINT_FILE).exists() or (out_dir / MODEL_FILE).exists():
        raise TrainingError(
            f"{out_dir}: already holds a training run; pass --resume to continue it, or "
            "choose another --out folder"
        )


def train(
    cfg: RunConfig | None,
    dataset: DetectionDataset,
    out_dir: Path | str,
    *,
    minutes: float | None = None,
    reserve_steps: int = 0,
    resume: bool = False,
    model_factory: ModelFactory | None = None,
    stop_after_steps: int | None = None,
    progress: bool = True,
) -> Path:
    """Train a detector on ``dataset``'s training split; return the path of ``model.pt``.

    Args:
        cfg: the run config; ``None`` with ``resume=True`` takes the run's saved config.
        dataset: any loaded dataset; images without a split are assigned one
            (:func:`~fabricdet.data.formats.assign_splits`).
        out_dir: the run folder (see the module docstring).
        minutes: training-time budget: the run stops when either budget is spent, and when
            the steps left no longer fit the time left, the learning-rate schedule and the
            model's progress re-plan to end on time (see :mod:`fabricdet.engine.optim`).
            Counted across resumed sessions; given again on resume, it replaces the saved
            budget.
        reserve_steps: hold back from ``minutes`` the time of this many steps at the measured
            rate, for work after the training (:class:`~fabricdet.engine.optim.Schedule`).
        resume: continue the run in ``out_dir`` from its checkpoint.
        model_factory: builds the model; default ``fabricdet.models.build_model`` (on resume:
            the builder recorded in the checkpoint).
        stop_after_steps: stop after this many steps of this session (like ``minutes``).
        progress: show progress on stderr (rank 0 only).

    Raises:
        TrainingError, ConfigError, DataError: with the file and the fix.
    """
    out_dir = Path(out_dir)
    _prepare_out_dir(out_dir, resume)
    ckpt = load_checkpoint(out_dir / CHECKPOINT_FILE) if resume else None
    if ckpt is not None:
        saved = saved_config(ckpt["config"], where=str(out_dir / CHECKPOINT_FILE))
        cfg = _resume_config(cfg, saved, out_dir)
    if cfg is None:
        raise ConfigError("train() needs a config unless it resumes a run")
    validate(cfg)
    if model_factory is not None:
        factory = model_factory
    elif ckpt is not None:  # rebuild what the run trained, whichever builder that was
        factory = resolve_factory(ckpt["factory"])
    else:
        factory = default_factory()
    factory_id = ckpt["factory"] if ckpt is not None else factory_name(factory)
    info = init_distributed(cfg.train.device)
    try:
        budget_s = None if minutes is None else max(0.0, minutes) * 60.0
        trainer = _Trainer(
            cfg, dataset, out_dir, info, factory, factory_id, budget_s, reserve_steps
        )
        if ckpt is not None:
            trainer.load(ckpt, out_dir / CHECKPOINT_FILE)
        if info.is_main:
            out_dir.mkdir(parents=True, exist_ok=True)
            save_config(cfg, out_dir / CONFIG_FILE)
        _run(trainer, stop_after_steps, progress)
        barrier(info)  # model.pt exists for every rank when train() returns
    finally:
        shutdown(info)
    return out_dir / MODEL_FILE


def _run(trainer: _Trainer, stop_after_steps: int | None, progress: bool) -> None:
    t, info, schedule = trainer.cfg.train, trainer.info, trainer.schedule
    writer = None
    if t.tensorboard and info.is_main:
        writer = open_tensorboard(str(trainer.out_dir / TENSORBOARD_DIR), purge_step=trainer.step)
    bar = Progress(
        t.max_steps,
        "train",
        initial=trainer.step,
        enabled=progress and info.is_main,
        every=t.log_every,
    )
    trainer.model.train()
    session_steps, last_saved = 0, trainer.step
    batches = iter(trainer.loader())
    try:
        while not schedule.done(trainer.step):
            tick = time.perf_counter()
            values = trainer.train_step(next(batches))
            session_steps += 1
            if trainer.step % t.log_every == 0 or trainer.step == t.max_steps:
                _log(writer, trainer.step, values)
            bar.update(1, loss=values["loss"], lr=values["lr"])
            if trainer.step % t.checkpoint_every == 0:
                trainer.save_checkpoint()
                last_saved = trainer.step
            # Every rank must see the same clock (it sets the learning rate) and stop at the
            # same step: take the slowest rank's step time and any rank's stop request.
            out_of_steps = stop_after_steps is not None and session_steps >= stop_after_steps
            stop, seconds = max_over_ranks(info, out_of_steps, time.perf_counter() - tick)
            schedule.record(trainer.step, seconds)
            if stop:
                break
    except KeyboardInterrupt:
        # Keep the work done so far: a Ctrl-C'd run resumes from here.
        if trainer.step != last_saved:
            trainer.save_checkpoint()
        raise
    finally:
        bar.close()
        del batches  # shuts the loader's worker processes down
        if writer is not None:
            writer.close()
    if trainer.step != last_saved:
        trainer.save_checkpoint()
    trainer.save_model()
