"""Mobility Work's fake as `workbridge dev` runs it."""

from __future__ import annotations

from adapters.devkit import DEV_API_KEY, DevVendor, ExampleCommand

DEV_WEBHOOK_SECRET = "dev-mobility-work-secret"


async def start_dev() -> DevVendor:
    """Start the fake Mobility Work with the dev credentials; it signs every webhook."""
    from adapters.mobilitywork.fake import FakeMobilityWork

    mw = FakeMobilityWork(api_key=DEV_API_KEY, webhook_secret=DEV_WEBHOOK_SECRET)
    base_url = await mw.start()

    def subscribe(url: str) -> None:
        mw.subscribe("*", url)

    return DevVendor(
        fake=mw,
        base_url=base_url,
        settings={
            "api_key": DEV_API_KEY,
            "webhook_secret": DEV_WEBHOOK_SECRET,
            "options": {"network_name": mw.network_name},
            # Fake server: retry in seconds, not in the minutes the document advises.
            "commands": {"backoff_base_s": 1, "backoff_max_s": 5},
        },
        changing_resources=frozenset(),
        subscribe=subscribe,
        hints=f"""A spare part consumed "in Mobility Work" (a signed webhook):
  curl -X POST {mw.control_url}/webhooks/SparePartWasConsumed \\
    -d '{{"sparePart": {{"id": 77}}, "consumed": {{"quantity": 3, "previousStock": 116}}}}'""",
        example_command=ExampleCommand(
            type="workbridge.mobilitywork.task.create",
            subject="equipment/PUMP-001",
            data='{"equipment": {"type": "externalReference", "value": "PUMP-001"},\n'
            '             "description": "Replace motor part", '
            '"startDateTime": "2026-11-24T09:00:00+00:00",\n'
            '             "endDateTime": "2026-11-24T10:00:00+00:00", "assignees": [3]}',
        ),
    )
