"""Test-only kill points: SIGKILL this process when a sync reaches a named phase.

The crash tests need kills that land inside a run's last phases (the final commit, the deletes,
the run row's finish), which no API call marks. A test sets ``QIANFAN_CATALOG_KILL_AT`` to a
phase name in the sync's environment; nothing else reads it, and unset it costs one comparison.
"""

from __future__ import annotations

import os
import signal

ENV = "QIANFAN_CATALOG_KILL_AT"

#: The phases a test can name, in the order a run reaches them.
PHASES = (
    "batch_written",  # a batch is written and not yet committed
    "batch_committed",  # the first commit that made written batches durable
    "mid_delete",  # deletes of one kind done, the other kinds' not yet, nothing committed
    "before_finish",  # all deletes done, the run row's finish not yet written
)

_AT = os.environ.get(ENV) or None
if _AT is not None and _AT not in PHASES:
    raise SystemExit(f"{ENV}={_AT!r} is not one of {', '.join(PHASES)}")


def reached(phase: str) -> None:
    """Die by SIGKILL here if the test asked for ``phase``."""
    if phase == _AT:
        os.kill(os.getpid(), signal.SIGKILL)
