"""CLOUDWORK|PRO's fake as `workbridge dev` runs it."""

from __future__ import annotations

import sys
from typing import Any

from adapters.devkit import DEV_API_KEY, DevVendor, ExampleCommand

# The dev client's Public API credentials: the client secret is the dev key every fake shares.
DEV_CLIENT_ID = "workbridge-dev"

# Basic auth of the bridge's webhook listener, as given to CWP "during onboarding".
DEV_WEBHOOK_USERNAME = "workbridge"
DEV_WEBHOOK_PASSWORD = DEV_API_KEY

# CWP delivers "from two possible IPs"; here from a second loopback address, so that the
# bridge's sender allowlist has something to check. Only Linux routes all of 127/8 to
# loopback without setup; elsewhere the system picks (127.0.0.1).
DEV_WEBHOOK_SOURCE: str | None = "127.0.0.2" if sys.platform.startswith("linux") else None

# Seeded ids, so that the banner's hints can name them.
DEV_SITE_ID = "651d5a4ebf54aa00087e7601"
DEV_WORK_ORDER_ID = "633cf3e1bb4e2453a0497b65"  # the document's status example


async def start_dev() -> DevVendor:
    """Start the fake CLOUDWORK|PRO with the dev client (`workbridge-dev` / the dev key), a few
    sites and work orders, and webhooks retried within seconds; records change through the
    control API (`/_fake/work_orders/…`, `/_fake/sites/…`), each change a notification."""
    from adapters.cloudworkpro.fake import FakeCloudworkPro, FakeCloudworkProBehaviour

    sources = (DEV_WEBHOOK_SOURCE,) if DEV_WEBHOOK_SOURCE else ()
    fake = FakeCloudworkPro(
        client_id=DEV_CLIENT_ID,
        client_secret=DEV_API_KEY,
        behaviour=FakeCloudworkProBehaviour(
            webhook_source_addresses=sources,
            # Fake server: retries every n x 5 s, not the document's n x 10 minutes.
            webhook_retry_unit_s=5.0,
        ),
    )
    seed(fake)
    base_url = await fake.start()

    def subscribe(url: str) -> None:
        fake.add_listener(url, username=DEV_WEBHOOK_USERNAME, password=DEV_WEBHOOK_PASSWORD)

    return DevVendor(
        fake=fake,
        base_url=base_url,
        settings={
            "credentials": {
                "client_id": DEV_CLIENT_ID,
                "client_secret": DEV_API_KEY,
                "webhook_user": DEV_WEBHOOK_USERNAME,
                "webhook_password": DEV_WEBHOOK_PASSWORD,
            },
            # The fake's deliveries come from loopback, not the document's two IPs.
            "options": {"webhook_sources": ["127.0.0.0/8"]},
            "commands": {"backoff_base_s": 1, "backoff_max_s": 5},
        },
        # The stored notifications too: the missed-webhook recovery (see `webhooks_down`).
        changing_resources=frozenset({"work_orders", "sites", "webhook_notifications"}),
        subscribe=subscribe,
        hints=f"""Change something "in CLOUDWORK|PRO" (a webhook for creates, polled for the rest):
  curl -X POST {fake.control_url}/work_orders \\
    -d '{{"name": "Heat map floor 3", "site_id": "{DEV_SITE_ID}"}}'
  curl -X PATCH {fake.control_url}/work_orders/{DEV_WORK_ORDER_ID} -d '{{"status": "scheduled"}}'
  curl -X POST {fake.control_url}/webhooks_down -d '{{"down": true}}'  # then recover them""",
        example_command=ExampleCommand(
            type="workbridge.cloudworkpro.work_order.set_status",
            subject=f"work_order/{DEV_WORK_ORDER_ID}",
            data='{"status": "draft"}',
        ),
    )


def seed(fake: Any) -> None:
    """Two sites and three work orders (one of them the document's status example, with the
    document's work type), created without notifications."""
    from adapters.cloudworkpro.fake import DOCUMENT_WORK_TYPE_ID

    fake.create_record(
        "sites",
        {"_id": DEV_SITE_ID, "name": "Headquarters", "address": "100 Main St, Austin, TX"},
        notify=False,
    )
    north = fake.create_record(
        "sites", {"name": "North Campus", "address": "42 North Rd, Dallas, TX"}, notify=False
    )
    fake.create_record(
        "work_orders",
        {
            "_id": DEV_WORK_ORDER_ID,
            "name": "WiFi heat map, 2nd floor",
            "status": "draft",
            "site_id": DEV_SITE_ID,
            "work_type_ids": [DOCUMENT_WORK_TYPE_ID],
        },
        notify=False,
    )
    fake.create_record(
        "work_orders",
        {"name": "Access point install", "status": "scheduled", "site_id": north["_id"]},
        notify=False,
    )
    fake.create_record(
        "work_orders",
        {"name": "Site survey", "status": "completed", "site_id": north["_id"]},
        notify=False,
    )
