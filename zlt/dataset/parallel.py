"""Run a per-file function over many files on all cores.

Processes, not threads: Pillow holds the GIL while decoding PNG, so threads barely help there.
`spawn` keeps workers safe inside servers and threaded callers (no forked locks).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")

# Below this many items a pool's start-up (a Python + Pillow import per worker) costs more than it saves.
MIN_PARALLEL_ITEMS = 16

_shared: Any = None


def _set_shared(value: Any) -> None:
    global _shared
    _shared = value


def _call(fn: Callable[[Any, T], R], item: T) -> R:
    return fn(_shared, item)


def resolve_workers(workers: int | None, n_items: int) -> int:
    """`None` means every core this process may use."""
    if workers is None:
        try:
            workers = len(os.sched_getaffinity(0))
        except AttributeError:  # macOS, Windows
            workers = os.cpu_count() or 1
    return max(1, min(workers, n_items))


def map_files(fn: Callable[[Any, T], R], items: Sequence[T], shared: Any = None, workers: int | None = None) -> list[R]:
    """`[fn(shared, x) for x in items]`, in order, spread over processes when it pays off.

    `shared` (read-only context such as the parameters) is sent to each worker once, not with every item.
    """
    n = resolve_workers(workers, len(items))
    if n <= 1 or len(items) < MIN_PARALLEL_ITEMS:
        return [fn(shared, x) for x in items]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    chunk = max(1, min(8, len(items) // (n * 8)))
    ctx = multiprocessing.get_context("spawn")
    try:
        with ProcessPoolExecutor(n, mp_context=ctx, initializer=_set_shared, initargs=(shared,)) as pool:
            return list(pool.map(functools.partial(_call, fn), items, chunksize=chunk))
    except (BrokenProcessPool, OSError):
        # Sandboxes without working process pools (no /dev/shm, restricted users): slower, still correct.
        # The per-file functions are idempotent, so running them again in this process is safe.
        return [fn(shared, x) for x in items]
