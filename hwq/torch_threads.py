"""One intra-op torch thread inside a block: results that do not depend on the machine's core
count or on which process runs the work (quality jobs, training the bundled models)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def one_thread() -> Iterator[None]:
    """torch with one intra-op thread inside the block (a no-op where torch is not installed)."""
    try:
        import torch
    except ImportError:  # a job that does not need torch
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
