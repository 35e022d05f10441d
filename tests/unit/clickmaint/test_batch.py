"""Click Maint's batch body and answer, from the document's batch example."""

from __future__ import annotations

import msgspec

from adapters.clickmaint.batch import batch_spec
from adapters.core.batching import BatchOp
from adapters.core.vendor_http import VendorResponse
from adapters.settings import InstanceConfig


def inst(**options: object) -> InstanceConfig:
    return InstanceConfig(
        vendor="clickmaint",
        base_url="https://app.clickmaint.com/api/v1",
        api_key=None,
        options=options,
    )


def test_the_documents_example_is_what_a_batch_of_two_sends() -> None:
    spec = batch_spec(inst())
    assert spec is not None
    ops = [
        BatchOp(
            "PATCH",
            "/parts/24/reconcile",
            {"quantity": -2, "note": "2 units damaged during shipping"},
            {"X-Entity-Id": "1"},
        ),
        BatchOp("POST", "/work_orders", {"work_order": {"title": "T"}}, {"X-Entity-Id": "1"}),
    ]
    assert spec.encode(ops) == {
        "ops": [
            {
                "method": "PATCH",
                "url": "/api/v1/parts/24/reconcile",
                "params": {"quantity": -2, "note": "2 units damaged during shipping"},
            },
            {
                "method": "POST",
                "url": "/api/v1/work_orders",
                "params": {"work_order": {"title": "T"}},
            },
        ],
        "sequential": True,
    }
    assert spec.group_key(ops[0]) == "1"
    assert spec.path == "/batch" and spec.max_ops == 20


def test_each_result_is_its_ops_answer() -> None:
    spec = batch_spec(inst())
    assert spec is not None
    body = {
        "results": [
            {"status": 200, "body": {"status": "success", "data": {"id": 24}}},
            {"status": 422, "body": {"status": "error", "message": "Title can't be blank"}},
        ]
    }
    answers = spec.decode(VendorResponse(200, {}, msgspec.json.encode(body), {}), 2)
    assert answers is not None
    assert [a.status for a in answers] == [200, 422]
    assert answers[1].json()["message"] == "Title can't be blank"
    # An answer that does not account for every op says nothing about any.
    assert spec.decode(VendorResponse(200, {}, msgspec.json.encode(body), {}), 3) is None
    assert spec.decode(VendorResponse(200, {}, b"not json", {}), 2) is None


def test_reads_are_not_batched_and_batching_can_be_switched_off_or_moved() -> None:
    spec = batch_spec(inst())
    assert spec is not None
    assert not spec.batchable(BatchOp("GET", "/parts/24", None, {"X-Entity-Id": "1"}))
    assert spec.batchable(BatchOp("DELETE", "/work_orders/5/part_assignments/7", None, {}))
    assert batch_spec(inst(batch={"enabled": False})) is None
    moved = batch_spec(inst(batch={"path": "/api/batch", "max_ops": 100}))
    assert moved is not None and (moved.path, moved.max_ops) == ("/api/batch", 100)
