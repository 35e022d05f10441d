"""Click Maint's fake as `workbridge dev` runs it."""

from __future__ import annotations

from typing import Any

from adapters.devkit import DEV_API_KEY, DevVendor

# Two entities, so that the bridge's fan-out over `X-Entity-Id` has something to do. The
# first is the document's example entity.
DEV_ENTITIES: list[dict[str, Any]] = [
    {
        "id": 1,
        "name": "Main Facility",
        "description": "Primary manufacturing and distribution facility",
        "address": "123 Example St",
        "datetime_format": "MM/DD/YYYY - 11:59 PM",
        "timezone": "Etc/UTC: +00:00",
        "currency": "USD",
        "currency_name": "United States Dollar",
        "currency_symbol": "$",
    },
    {
        "id": 2,
        "name": "North Plant",
        "description": "Second site",
        "address": "456 Example Ave",
        "datetime_format": "MM/DD/YYYY - 11:59 PM",
        "timezone": "Etc/UTC: +00:00",
        "currency": "USD",
        "currency_name": "United States Dollar",
        "currency_symbol": "$",
    },
]


async def start_dev() -> DevVendor:
    """Start the fake Click Maint with the dev API key, two entities and a few records (the
    document's examples); records change through the control API (`/_fake/entities/…`)."""
    from adapters.clickmaint.fake import RESOURCES, FakeClickMaint

    fake = FakeClickMaint(api_key=DEV_API_KEY, entities=DEV_ENTITIES)
    seed(fake)
    base_url = await fake.start()

    def subscribe(url: str) -> None:
        # Click Maint has no webhooks: changes are found by polling.
        del url

    return DevVendor(
        fake=fake,
        base_url=base_url,
        # Twenty poll tasks (ten resources, two entities) within 300 requests per 5 minutes:
        # each is visited every half minute, leaving room for commands.
        settings={"api_key": DEV_API_KEY, "polling": {"interval_s": 30}},
        # Every resource changes through the control API; part transactions through the
        # API's restock, reconcile, set cost and part assignments (commands).
        changing_resources=frozenset({*RESOURCES, "part_transactions"}),
        subscribe=subscribe,
        hints=f"""Change something "in Click Maint" (found by the next poll):
  curl -X POST {fake.control_url}/entities/1/work_orders \\
    -d '{{"title": "Fix water leakage in Freezer", "priority": "high"}}'
  curl -X PATCH {fake.control_url}/entities/1/parts/72 -d '{{"on_hand_qty": 3}}'""",
    )


def seed(fake: Any) -> None:
    """The document's example records in entity 1, and one asset in entity 2."""
    fake.create_record(
        1,
        "assets",
        {"id": 102, "name": "Air Purifier", "asset_code": "AHU-BLD1-01-001", "status": "online"},
    )
    fake.create_record(
        1,
        "parts",
        {
            "id": 72,
            "name": "Air Filter",
            "description": "Fiberglass panel filter",
            "number": "FL_A",
            "on_hand_qty": 6,
            "min_qty": 5,
            "desired_qty": 8,
            "unit_cost": 26.15,
            "measurement_unit": {"id": 2, "name": "Item", "short_name": "itm"},
        },
    )
    fake.create_record(
        1,
        "work_orders",
        {
            "id": 1126,
            "title": "Fix water leakage in Freezer",
            "description": "Water leakage due to blocked defrost drain",
            "priority": "high",
            "type": "reactive",
        },
    )
    fake.create_record(2, "assets", {"name": "Compressor", "status": "online"})
