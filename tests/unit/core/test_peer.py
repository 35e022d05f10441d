"""The sender's address behind trusted proxies, and a vendor's source allowlist."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient

from adapters.core.peer import client_address, in_networks, parse_networks
from adapters.core.webhook_server import WebhookServer
from tests.unit.core.test_webhook_server import BODY, instances, moco_headers
from tests.unit.core.webhook_harness import FakePublisher, served

# CLOUDWORK|PRO's documented sender addresses.
CWP = parse_networks(["44.193.241.109", "184.169.231.134"])
INGRESS = parse_networks(["10.0.0.0/8"])


def test_without_trusted_proxies_the_peer_is_the_sender() -> None:
    assert client_address("44.193.241.109", ["1.2.3.4"], ()) == "44.193.241.109"


def test_a_trusted_proxy_hands_on_the_address_it_saw() -> None:
    assert client_address("10.1.2.3", ["44.193.241.109"], INGRESS) == "44.193.241.109"
    # Several proxies: read from the right, past every trusted hop.
    assert client_address("10.1.2.3", ["44.193.241.109, 10.9.9.9"], INGRESS) == "44.193.241.109"
    # Several headers count as one list, in order.
    assert client_address("10.1.2.3", ["44.193.241.109", "10.9.9.9"], INGRESS) == "44.193.241.109"


def test_a_client_cannot_forge_its_way_past_the_proxy() -> None:
    # The attacker puts a CWP address first; the proxy appends the attacker's real one.
    assert client_address("10.1.2.3", ["44.193.241.109, 203.0.113.7"], INGRESS) == "203.0.113.7"
    # An untrusted peer's header is never believed.
    assert client_address("203.0.113.7", ["44.193.241.109"], INGRESS) == "203.0.113.7"
    # Garbage in the chain: fall back to the proxy itself, which is not on any allowlist.
    assert client_address("10.1.2.3", ["44.193.241.109, nonsense"], INGRESS) == "10.1.2.3"


def test_addresses_with_ports_and_v6() -> None:
    assert client_address("10.1.2.3", ["44.193.241.109:443"], INGRESS) == "44.193.241.109"
    assert client_address("::1", [], ()) == "::1"
    assert client_address("10.1.2.3", ["[2001:db8::1]:443"], INGRESS) == "2001:db8::1"
    assert in_networks("44.193.241.109", CWP)
    assert not in_networks("44.193.241.110", CWP)
    assert not in_networks(None, CWP)


def test_a_bad_network_is_named() -> None:
    with pytest.raises(ValueError, match=r"'10\.0\.0\.300/8'"):
        parse_networks(["10.0.0.300/8"])


@pytest_asyncio.fixture
async def allowlisted() -> AsyncIterator[tuple[FakePublisher, WebhookServer, TestClient]]:
    insts = instances()
    moco = insts["moco"]
    assert moco.spec.webhook is not None
    webhook = dataclasses.replace(moco.spec.webhook, allowed_sources=lambda _i: ["127.0.0.2/32"])
    insts["moco"] = dataclasses.replace(moco, spec=dataclasses.replace(moco.spec, webhook=webhook))
    publisher = FakePublisher()
    async with served(insts, publisher, max_body_bytes=4096) as (client, server):
        yield publisher, server, client


async def test_a_sender_outside_the_allowlist_gets_403_and_nothing_is_published(
    allowlisted: tuple[FakePublisher, WebhookServer, TestClient],
) -> None:
    publisher, server, client = allowlisted
    resp = await client.post("/webhooks/moco", data=BODY, headers=moco_headers(BODY))
    assert resp.status == 403
    assert publisher.calls == []
    # Through a trusted proxy (the test client is 127.0.0.1) from an allowed address: taken.
    server.trusted = parse_networks(["127.0.0.1/32"])
    headers = {**moco_headers(BODY), "X-Forwarded-For": "127.0.0.2"}
    resp = await client.post("/webhooks/moco", data=BODY, headers=headers)
    assert resp.status == 200
    assert len(publisher.calls) == 1


def test_an_ipv4_mapped_peer_is_its_ipv4_address() -> None:
    allowed = parse_networks(["44.193.241.109/32"])
    assert in_networks("::ffff:44.193.241.109", allowed)
    assert not in_networks("::ffff:44.193.241.110", allowed)
