"""MOCO's fake as `workbridge dev` runs it."""

from __future__ import annotations

from adapters.devkit import DEV_API_KEY, DevVendor, ExampleCommand

# The fake's webhook signing key (MOCO shows a 32-hex-digit key in its web hook overview).
DEV_WEBHOOK_SECRET = "1d608b9d72219b90ff2393a1d3ee0ac0"


async def start_dev() -> DevVendor:
    """Start the fake MOCO with the dev credentials; webhooks for every writable resource."""
    from adapters.moco.fake import FakeMoco

    moco = FakeMoco(api_key=DEV_API_KEY, webhook_secret=DEV_WEBHOOK_SECRET)
    base_url = await moco.start()
    writable = frozenset(moco.behaviour.writable_resources)

    def subscribe(url: str) -> None:
        for resource in sorted(writable):
            moco.subscribe(moco.behaviour.webhook_targets[resource], "*", url)

    return DevVendor(
        fake=moco,
        base_url=base_url,
        settings={"api_key": DEV_API_KEY, "webhook_secret": DEV_WEBHOOK_SECRET},
        changing_resources=writable,
        subscribe=subscribe,
        hints=f"""Change something "in MOCO" (becomes a webhook and a polled event):
  curl -X POST {moco.control_url}/companies -d '{{"name": "Acme", "type": "customer"}}'""",
        example_command=ExampleCommand(
            type="workbridge.moco.company.create",
            subject="company/new-1",
            data='{"name": "Beispiel AG", "type": "customer", "currency": "CHF"}',
        ),
    )
