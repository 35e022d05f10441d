"""What a source needs besides the vendor is declared on the source, and read by the core
through `needs_of` (not by looking for particular classes or attributes)."""

from __future__ import annotations

from dataclasses import dataclass

from adapters.cloudworkpro.resources import Recovery
from adapters.cmo.resources import WATCH
from adapters.core.change_source import NEEDS_NOTHING, SourceNeeds, needs_of
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


def test_a_plain_listing_and_an_undeclaring_source_need_nothing() -> None:
    @dataclass(frozen=True)
    class Bare:
        path: str = "/x"

    assert needs_of(Bare()) == NEEDS_NOTHING
    assert {needs_of(r.source) for r in MOCO_POLL.resources.values()} == {NEEDS_NOTHING}


def test_across_the_registry_only_cmo_reads_tracking_and_only_cloudworkpro_published() -> None:
    tracking, published = set(), set()
    for vendor, spec in VENDORS.items():
        for name, res in spec.poll.resources.items() if spec.poll else ():
            needs = needs_of(res.source)
            if needs.tracking:
                tracking.add((vendor, name))
            if needs.published:
                published.add((vendor, name))
    assert tracking == {("cmo", "actions")}
    assert {v for v, _ in published} == {"cloudworkpro"}
