"""The cycle collector's settings while a sync runs and once a command is done.

They are the process's, not a run's: a run puts back what it changed, and only the command
line's entry point turns collection off for good (its last step).
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

#: Allocations between two collections of the youngest generation during a run (default 700).
YOUNG_COLLECTION = 10_000


@contextmanager
def steady_collector() -> Iterator[None]:
    """While a run lasts, collect cyclic garbage seldom, and never walk what existed before.

    A run allocates and frees objects for every listed item, nearly all freed at once by
    reference counting. With Python's defaults the cycle collector still runs again and again
    in a no-op re-sync of a long listing, and each full collection walks every object the
    imports made (SQLAlchemy's, mostly): a large share of that run's CPU
    (docs/benchmark-history.md, the no-op pair). What existed before the run is frozen
    (``gc.freeze``: never walked), and the youngest generation is collected every
    ``YOUNG_COLLECTION`` allocations. The settings are the process's, so they are put back when
    the run ends.

    (Python's switch interval is kept: handing the interpreter to a waiting thread sooner
    helps an unpaced sync a little but costs a paced one about as much in CPU, and every real
    sync is paced.)
    """
    threshold = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(max(threshold[0], YOUNG_COLLECTION), *threshold[1:])
    try:
        yield
    finally:
        gc.set_threshold(*threshold)
        gc.unfreeze()


def end_of_process() -> None:
    """Called when the process has nothing left to do but exit: no cycle collection from here.

    The interpreter's teardown clears every module, and with the collector on, each step runs
    it over everything a sync left (SQLAlchemy's and the run's objects): CPU spent after the
    summary line was written, which counts when several accounts' syncs end together on one
    host (docs/benchmark-history.md, many accounts). Memory goes back to the operating system
    whole; ``atexit`` handlers and the final flush of standard output and error still run, and
    every connection and file the sync opened was closed before this.
    """
    gc.disable()
    gc.freeze()
