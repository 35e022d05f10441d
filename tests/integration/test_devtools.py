"""`workbridge send`: a command goes out and its own result comes back, on any partition."""

from __future__ import annotations

import pytest

from adapters.devtools import send_command
from adapters.moco.fake import FakeMoco
from tests.integration.conftest import BridgeFactory

pytestmark = pytest.mark.integration


async def test_send_waits_for_its_own_result(
    fake_moco: FakeMoco, start_bridge: BridgeFactory
) -> None:
    bridge = await start_bridge(commands={"enabled": True}, webhooks={"enabled": False})
    results = []
    # Several subjects, so results land on more than one partition of the results topic.
    for i in range(4):
        results.append(
            await send_command(
                bridge.config,
                instance="moco",
                type="workbridge.moco.company.create",
                data={"name": f"Company {i}", "type": "customer"},
                subject=f"company/new-{i}",
                command_id=f"cmd-{i}",
                idempotency_key=None,
                wait_s=20,
            )
        )
    assert [r["status"] if r else None for r in results] == ["succeeded"] * 4
    assert sorted(r["response"]["name"] for r in results if r) == [f"Company {i}" for i in range(4)]
    assert len(fake_moco.calls) == 4
