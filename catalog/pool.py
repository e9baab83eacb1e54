"""Worker threads for the walk that run the deepest task first.

The walk fans out: a listing page submits a task per set, and each of those its versions'
calls (a DescribeModel and a DescribeModelExportTask per version). A set whose listing item
lacks its creation time (a preset one), when new or changed, also gets its describe call, at
the set's depth. A first-in-first-out pool (such as ``ThreadPoolExecutor``) runs every set's
task before any version's, so by then every version's tasks sit in its queue at once: memory
grows with the number of model sets. Taking the deepest task first finishes what a set
started before starting the next set, so the queue holds the sets not yet started plus a few
sets' versions, and the rate limiter is never starved: there is always a task to run while any
is queued.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
from collections.abc import Callable

Task = Callable[[], None]

_log = logging.getLogger(__name__)

#: Queued ahead of every task by ``shutdown``, so workers stop before running anything else.
_STOP = -(2**31)


class DeepestFirstPool:
    """``workers`` daemon threads taking the queued task of the greatest ``depth`` first."""

    def __init__(self, workers: int, name: str = "walk") -> None:
        self._queue: queue.PriorityQueue[tuple[int, int, Task | None]] = queue.PriorityQueue()
        self._name = name
        self._order = itertools.count()  # first in, first out among tasks of one depth
        self.max_queued = 0  # the longest the queue grew; the memory test reads it
        self._threads = [
            threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True)
            for i in range(max(workers, 1))
        ]
        self._started = False  # threads start with the first task, so an unused pool costs none
        self._room = threading.Lock()
        self._waiting = 0  # workers inside wait_for_room
        self._stopping = threading.Event()

    def submit(self, task: Task, depth: int = 0) -> None:
        if not self._started:
            self._started = True
            for thread in self._threads:
                thread.start()
        self._queue.put((-depth, next(self._order), task))
        self.max_queued = max(self.max_queued, self._queue.qsize())

    def _work(self) -> None:
        while True:
            _, _, task = self._queue.get()
            if task is None:
                return
            try:
                task()
            except Exception:
                # The sync reports its tasks' failures itself (``_Run._run_task``); one that
                # escapes is a bug, logged here. It must not take its worker along: a pool
                # short of workers starves the limiter, and wait_for_room counts on them.
                _log.exception("a task of the %s pool raised; its worker goes on", self._name)

    def wait_for_room(self, limit: int, poll: float = 0.01) -> None:
        """Hold the calling worker while more than ``limit`` tasks are queued.

        A listing runs in one worker and can name entities faster than the other workers
        answer the detail calls they need (a failed compression task's, with no rate limit):
        without a bound those calls queued up with their answers, and memory grew with the
        listing. The wait is skipped when it would leave no other worker free to drain the
        queue (one worker, or all the others waiting too), so it can never stop the walk.
        """
        with self._room:
            if self._waiting + 1 >= len(self._threads):
                return
            self._waiting += 1
        try:
            while self._queue.qsize() > limit and not self._stopping.is_set():
                self._stopping.wait(poll)
        finally:
            with self._room:
                self._waiting -= 1

    def shutdown(self) -> None:
        """Stop the workers after their current task; tasks still queued are dropped."""
        self._stopping.set()
        if not self._started:
            return
        for _ in self._threads:
            self._queue.put((_STOP, next(self._order), None))
