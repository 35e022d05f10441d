"""Click Maint's sequential batch endpoint, as the core's command batching uses it.

The document: `{"ops": [{"method", "url", "params"}], "sequential": true}` with 1..100
operations, answered `{"results": [{"status", "body"}]}` in order; op urls are server
paths (`/api/v1/parts/24/reconcile`). Every op of one batch carries the batch's
`X-Entity-Id`, so only calls of one entity share a batch.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import msgspec

from adapters.clickmaint.undocumented import ClickMaintOptions
from adapters.core.batching import BatchOp, BatchSpec
from adapters.core.vendor_http import VendorResponse
from adapters.settings import InstanceConfig

ENTITY_HEADER = "X-Entity-Id"


def _entity(op: BatchOp) -> str | None:
    for name, value in op.headers.items():
        if name.lower() == ENTITY_HEADER.lower():
            return value
    return None


def _batchable(op: BatchOp) -> bool:
    # Writes only (reads have no side effect to save a request for), on the API's own paths.
    return op.method in {"POST", "PATCH", "PUT", "DELETE"} and op.path.startswith("/")


def batch_spec(inst: InstanceConfig) -> BatchSpec | None:
    """The instance's batching (None when its options switch it off)."""
    options = ClickMaintOptions.of(inst).batch
    if not options.enabled:
        return None
    root = urlsplit(inst.base_url).path.rstrip("/")

    def encode(ops: list[BatchOp]) -> Any:
        return {
            "ops": [
                {"method": op.method, "url": root + op.path}
                | ({"params": op.json} if op.json is not None else {})
                for op in ops
            ],
            "sequential": True,
        }

    def decode(answer: VendorResponse, count: int) -> list[VendorResponse] | None:
        try:
            results = answer.json()["results"]
        except (msgspec.DecodeError, KeyError, TypeError):
            return None
        if not isinstance(results, list) or len(results) != count:
            return None
        out = []
        for result in results:
            if not isinstance(result, dict) or not isinstance(result.get("status"), int):
                return None
            body = msgspec.json.encode(result.get("body"))
            out.append(VendorResponse(result["status"], {}, body, {}))
        return out

    return BatchSpec(
        path=options.path,
        encode=encode,
        decode=decode,
        group_key=_entity,
        max_ops=options.max_ops,
        batchable=_batchable,
        chain=options.chain_subjects,
    )
