"""What a source needs besides the vendor is declared on the source, and read by the core
through `needs_of` (not by looking for particular classes or attributes)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from adapters.cloudworkpro.resources import Recovery
from adapters.cmo.resources import WATCH
from adapters.core.change_source import NEEDS_NOTHING, SourceNeeds, needs_of
from adapters.core.list_source import ListByReplicationKey
from adapters.core.watch_source import OptionIds, WatchTrackedIds, watched_event
from adapters.moco.resources import POLL as MOCO_POLL
from adapters.registry import VENDORS


def test_a_watch_fed_by_commands_needs_the_tracking_topic_and_nothing_else() -> None:
    assert needs_of(WATCH) == SourceNeeds(tracking=True)
    unfed = WatchTrackedIds(
        path="/x/{id}", tracked=OptionIds(lambda o: {}), to_event=watched_event("v", "r")
    )
    assert needs_of(unfed) == NEEDS_NOTHING


def test_a_missed_webhook_recovery_needs_the_published_ids() -> None:
    recovery = Recovery(mapper=lambda *_: [])  # type: ignore[arg-type]
    assert needs_of(recovery) == SourceNeeds(published=True)


def test_a_listing_needs_the_published_ids_only_when_it_skips_them() -> None:
    @dataclass(frozen=True)
    class Bare:
        path: str = "/x"

    assert needs_of(Bare()) == NEEDS_NOTHING
    moco = next(iter(MOCO_POLL.resources.values())).source
    assert isinstance(moco, ListByReplicationKey)
    assert needs_of(moco) == SourceNeeds(published=True)
    assert needs_of(dataclasses.replace(moco, skip_published=None)) == NEEDS_NOTHING


def test_across_the_registry_who_reads_tracking_and_published_ids() -> None:
    tracking, published = set(), set()
    for vendor, spec in VENDORS.items():
        for name, res in spec.poll.resources.items() if spec.poll else ():
            needs = needs_of(res.source)
            if needs.tracking:
                tracking.add((vendor, name))
            if needs.published:
                published.add((vendor, name))
    assert tracking == {("cmo", "actions")}
    # MOCO's polls leave out what its webhooks published; CLOUDWORK|PRO's recovery does.
    assert {v for v, _ in published} == {"moco", "cloudworkpro"}
    assert ("cloudworkpro", "webhook_notifications") in published
