"""BLAS on one thread inside a block: NEMO's small matrix work (batched GNN passes, the local
improvement's least squares) gives the same numbers whatever the machine's thread count, and
does not pay a thread pool's start-up and spinning on small matrices (a 104 x 104 least-squares
solve took 390 ms on two busy cores with OpenBLAS's threads, 5 ms on one)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_CONTROLLER: list[Any] = []  # threadpoolctl's controller, found once per process


@contextmanager
def one_blas_thread() -> Iterator[None]:
    """BLAS on one thread inside the block (threadpoolctl, which scikit-learn brings)."""
    if not _CONTROLLER:
        try:
            from threadpoolctl import ThreadpoolController

            _CONTROLLER.append(ThreadpoolController())
        except ImportError:  # pragma: no cover
            _CONTROLLER.append(None)
    controller = _CONTROLLER[0]
    if controller is None:  # pragma: no cover
        yield
        return
    with controller.limit(limits=1, user_api="blas"):
        yield
