"""What the vendor's documents promise each call answers, and where real answers differ.

The sync was written from documents that are incomplete (long pages were partly unreadable, see
``../shared/api/REFERENCE.md``). Each answer object is held against the fields its call's pages
and seed examples list: a field an answer carries that no document names is *unknown*, a field the
documents list as always present that an answer lacks is *missing*. A run collects both per kind
and call, so a user's first real sync says exactly where the real API differs from the documents.

Only top-level fields of each object are compared: nested objects (``sourceInfo``,
``tokenLimitations``, ``config``) have sub-keys the documents do not show, so every answer would
report them.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Fields:
    """``required``: documented and always present; ``optional``: documented, may be absent."""

    required: frozenset[str]
    optional: frozenset[str] = frozenset()

    @property
    def known(self) -> frozenset[str]:
        return self.required | self.optional


def _f(required: str, optional: str = "") -> Fields:
    return Fields(frozenset(required.split()), frozenset(optional.split()))


#: Per call, the fields of one answer object (a listing's item, or a describe call's ``result``).
#: Sources: REFERENCE.md sections 1-6 and the seed pages. Fields the documents mark as filled
#: only in some states (an export's file fields, a preset-only description) are optional.
CALL_FIELDS: dict[str, Fields] = {
    "DescribeCustomModelSets": _f(
        "modelSetId modelSetName modelType modelIds",
        "labels createTime modifyTime modelCount modelNames",
    ),
    "DescribeSystemModelSets": _f(
        "modelSetId modelSetName modelType modelIds",
        "description modifyTime time modelCount modelNames",
    ),
    "DescribeModelSet": _f(
        "modelSetId modelSetName modelType",
        "source labels createTime modifyTime description modelIds modelNames modelCount",
    ),
    "DescribeSystemModelSet": _f(
        "modelSetId modelSetName modelType modelIds",
        "createTime modifyTime description modelNames",
    ),
    "DescribeModel": _f(
        "modelSetId modelId modelName status",
        "model sourceInfo description createTime modifyTime modelApplicationType "
        "tokenLimitations isSupportDeploy isSupportModelComp isSupportEvaluation capabilities "
        "modelProviders modelSetName modelCompConfigs advancedSettings endpointType ioTokens "
        "resourceConfig resourceId",
    ),
    "DescribeSystemModel": _f(
        "modelSetId modelId modelName status",
        "description createTime modifyTime modelApplicationType tokenLimitations "
        "isSupportDeploy isSupportModelComp isSupportEvaluation capabilities modelProviders",
    ),
    # The listing's key names for the source/output versions and times are not visible in the
    # documents; these are the detail call's names and seed 002's.
    "DescribeModelCompTasks": _f(
        "id name status", "description sourceModelId modelId createTime finishTime config"
    ),
    "DescribeModelCompTask": _f(
        "id name status",
        "description failedReason sourceModelId modelId config createTime finishTime",
    ),
    "DescribeModelExportTask": _f(
        "hasRecord",
        "exportId status state fileName fileType md5 fileSize downloadUrl modelId",
    ),
    "EvalResultExportInfo": _f(
        "exportID state",
        "exportIDStr exportType volumeId exportPath downloadUrl id idStr",
    ),
}

UNKNOWN, MISSING = "unknown", "missing"


@dataclass
class DriftSeen:
    count: int
    example_id: str | None


class DriftLog:
    """Drift found during one run, by (kind, call, field, unknown|missing). Thread-safe.

    Memory is bounded by the number of distinct drifting fields, not by the catalog.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.found: dict[tuple[str, str, str, str], DriftSeen] = {}

    def check(self, kind: str, call: str, obj: Mapping[str, object], entity_id: str) -> None:
        """Compare one answer object with its call's documented fields."""
        fields = CALL_FIELDS.get(call)
        if fields is None:
            return
        keys = obj.keys()
        unknown = keys - fields.known
        missing = fields.required - keys
        if not unknown and not missing:  # the common case: no lock taken
            return
        with self._lock:
            for names, drift in ((unknown, UNKNOWN), (missing, MISSING)):
                for name in names:
                    seen = self.found.get((kind, call, name, drift))
                    if seen is None:
                        self.found[(kind, call, name, drift)] = DriftSeen(1, entity_id)
                    else:
                        seen.count += 1
