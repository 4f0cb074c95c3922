"""The adapter tests run many tiny forward passes: one thread each, since the 2-core test
machine is shared (oversubscribed threads make them several times slower)."""

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
