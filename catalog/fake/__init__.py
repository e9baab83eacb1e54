"""The fake Qianfan console: a generated catalog, an HTTP server over it, fault injection, replay.

It is part of the product: the test suite, ``qianfan-catalog demo`` and the benchmark all sync
against it, because there is no sandbox for the real console.
"""

from catalog.fake.catalog import EVAL_ROUTE, KINDS, ZERO_TIME, FakeCatalog
from catalog.fake.faults import FAULTS, FaultPlan, chaos_plan
from catalog.fake.replay import Recording, load_recording
from catalog.fake.server import V2_ROUTE, CallRecord, FakeServer, serve

__all__ = [
    "EVAL_ROUTE",
    "FAULTS",
    "KINDS",
    "V2_ROUTE",
    "ZERO_TIME",
    "CallRecord",
    "FakeCatalog",
    "FakeServer",
    "FaultPlan",
    "Recording",
    "chaos_plan",
    "load_recording",
    "serve",
]
