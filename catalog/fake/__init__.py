"""The fake Qianfan console: a generated catalog, an HTTP server over it, fault injection, replay.

It is part of the product: the test suite, ``qianfan-catalog demo`` and the benchmark all sync
against it, because there is no sandbox for the real console.
"""

from catalog.fake.catalog import (
    ALL_KINDS,
    EVAL_ROUTE,
    KINDS,
    LIFECYCLE_KINDS,
    ZERO_TIME,
    FakeCatalog,
)
from catalog.fake.faults import FAULTS, FaultPlan, chaos_plan
from catalog.fake.replay import Recording, load_recording
from catalog.fake.server import (
    ACTION_ROUTES,
    EVAL_V2_ROUTE,
    FINETUNING_ROUTE,
    SERVICE_ROUTE,
    V2_ROUTE,
    CallRecord,
    FakeServer,
    serve,
)

__all__ = [
    "ACTION_ROUTES",
    "ALL_KINDS",
    "EVAL_ROUTE",
    "EVAL_V2_ROUTE",
    "FAULTS",
    "FINETUNING_ROUTE",
    "KINDS",
    "LIFECYCLE_KINDS",
    "SERVICE_ROUTE",
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
