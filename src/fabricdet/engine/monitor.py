"""Watching a long job: a progress display and optional TensorBoard scalars.

On a terminal the progress is a tqdm bar; otherwise (logs, CI, pipes) it is a plain line
every ``every`` updates, so log files are not filled with carriage returns. Everything goes to
stderr: stdout stays free for machine-readable output (``fabricdet eval --json``).
"""

from __future__ import annotations

import sys
import time
from typing import Any, Protocol, TextIO

from tqdm import tqdm


class ScalarWriter(Protocol):
    """What the training loop needs of ``torch.utils.tensorboard.SummaryWriter``."""

    def add_scalar(self, tag: str, scalar_value: float, global_step: int) -> None: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...


class Progress:
    """Progress of a job of ``total`` units, starting at ``initial``.

    Args:
        enabled: False shows nothing (DDP ranks other than 0, quiet library calls).
        every: plain-line mode prints one line per this many units.
    """

    def __init__(
        self,
        total: int,
        desc: str,
        *,
        initial: int = 0,
        enabled: bool = True,
        every: int = 10,
        stream: TextIO | None = None,
    ) -> None:
        self.total = total
        self.desc = desc
        self.count = initial
        self.enabled = enabled
        self.every = max(1, every)
        self.stream = stream or sys.stderr
        self.postfix: dict[str, Any] = {}
        self._start = time.perf_counter()
        self._start_count = initial
        self._bar: tqdm | None = None
        if enabled and self.stream.isatty():
            self._bar = tqdm(total=total, initial=initial, desc=desc, file=self.stream)

    def update(self, n: int = 1, **postfix: Any) -> None:
        self.count += n
        self.postfix = postfix
        if not self.enabled:
            return
        if self._bar is not None:
            if postfix:
                self._bar.set_postfix(postfix, refresh=False)
            self._bar.update(n)
        elif self.count % self.every < n or self.count >= self.total:
            self._line()

    def _line(self) -> None:
        elapsed = time.perf_counter() - self._start
        done = self.count - self._start_count
        rate = done / elapsed if elapsed > 0 else 0.0
        fields = " ".join(f"{k}={_fmt(v)}" for k, v in self.postfix.items())
        line = f"{self.desc} {self.count}/{self.total} {elapsed:.0f}s {rate:.2f}it/s {fields}"
        print(
            line.rstrip(),
            file=self.stream,
            flush=True,
        )

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def open_tensorboard(log_dir: str, purge_step: int | None = None) -> ScalarWriter | None:
    """A TensorBoard ``SummaryWriter`` on ``log_dir``, or None (with a one-line notice on
    stderr) when the ``tensorboard`` package is not installed.

    Args:
        purge_step: on resume, drop events logged after this step by the interrupted run, so
            curves do not double back.
    """
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        print(
            "fabricdet: tensorboard is not installed; no TensorBoard logs "
            "(pip install tensorboard, or set train.tensorboard=false)",
            file=sys.stderr,
        )
        return None
    return SummaryWriter(log_dir=log_dir, purge_step=purge_step)  # type: ignore[no-any-return]
