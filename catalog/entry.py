"""The console script's first instructions: a signal to stop is exit 9 from the very start.

A sync turns SIGINT and SIGTERM into a stop after the current batch once its run is under way
(``sync._stop_on_signals``). Before that (the imports, the lock wait, the first calls) and in
every other command, Python's default made Ctrl-C click's "Aborted!" with exit 1, or a
traceback while the imports ran, and SIGTERM a kill; cron and systemd read 9 as "stopped on
request" (README, *Exit codes*). What is stopped here is as after any other error: the open
transaction is not committed.
"""

from __future__ import annotations

import signal
import sys
from types import FrameType

#: ExitCode.INTERRUPTED, without importing anything heavier than this module.
INTERRUPTED = 9


def _stop(signum: int, _frame: FrameType | None) -> None:
    message = f"interrupted by {signal.Signals(signum).name}"
    # Once the CLI has set up its logs, as its other fatal errors are (a JSON line with
    # --log-format json); before, plain text.
    # getattr: a signal may land while either module is still being imported.
    report = getattr(sys.modules.get("catalog.logs"), "report_fatal", None)
    if report is None or not report(message, INTERRUPTED):
        sys.stderr.write(f"Error: {message}\n")
    stopping = getattr(sys.modules.get("catalog.api.retry"), "STOPPING", None)
    if stopping is not None:
        stopping.set()  # a call retrying in another thread is not tried again
    raise SystemExit(INTERRUPTED)


def main() -> None:
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _stop)
    from catalog.cli import main as run

    run()
