"""Every assumption knob a fake vendor has is flipped by at least one test.

A fake's behaviour struct (`FakeMocoBehaviour`, `FakeMobilityWorkBehaviour`,
`FakeClickMaintBehaviour`, `FakeCmoBehaviour`, `FakeCloudworkProBehaviour`) holds every reading
of what the vendor's document leaves open.
Workbridge must work under each reasonable reading, so each field must be set away from its
default somewhere under tests/: a knob added without such a test fails here, by name.

"Set" means the field appears as a keyword argument (`first_id=…`) in a test file that imports
the vendor's fake module: `FakeMocoBehaviour(first_id=5)`, `msgspec.structs.replace(b,
first_id=5)`, a helper's `moco(first_id=5)` or `dict(first_id=5)` in a parametrization. Spell
the knob out that way (not `**{"first_id": 5}`) so that this test can see it.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

import msgspec
import pytest

from adapters.clickmaint.fake import FakeClickMaintBehaviour
from adapters.cloudworkpro.fake import FakeCloudworkProBehaviour
from adapters.cmo.fake import FakeCmoBehaviour
from adapters.mobilitywork.fake import FakeMobilityWorkBehaviour
from adapters.moco.fake import FakeMocoBehaviour

TESTS = Path(__file__).resolve().parents[1]
THIS = Path(__file__).resolve()

# (vendor, behaviour struct, the module a test imports to use that vendor's fake)
FAKES: list[tuple[str, type[msgspec.Struct], str]] = [
    ("moco", FakeMocoBehaviour, "adapters.moco.fake"),
    ("mobilitywork", FakeMobilityWorkBehaviour, "adapters.mobilitywork.fake"),
    ("clickmaint", FakeClickMaintBehaviour, "adapters.clickmaint.fake"),
    ("cmo", FakeCmoBehaviour, "adapters.cmo.fake"),
    ("cloudworkpro", FakeCloudworkProBehaviour, "adapters.cloudworkpro.fake"),
]


@cache
def sources(module: str) -> tuple[tuple[Path, str], ...]:
    """The test files (this one excepted) that use the fake in `module`."""
    found = []
    for path in sorted(TESTS.rglob("*.py")):
        if path.resolve() == THIS:
            continue
        text = path.read_text(encoding="utf-8")
        if module in text:
            found.append((path, text))
    return tuple(found)


def setting(name: str) -> re.Pattern[str]:
    """`name=` as a keyword argument: not `name ==`, not `obj.name =`, not `other_name=`."""
    return re.compile(rf"(?<![\w.]){re.escape(name)}\s*=(?!=)")


def setters(name: str, module: str) -> list[Path]:
    """The test files that set knob `name` of the fake in `module`."""
    pattern = setting(name)
    return [path for path, text in sources(module) if pattern.search(text)]


KNOBS = [
    pytest.param(field.name, module, id=f"{vendor}.{field.name}")
    for vendor, struct, module in FAKES
    for field in msgspec.structs.fields(struct)
]


@pytest.mark.parametrize(("knob", "module"), KNOBS)
def test_every_knob_is_flipped_by_a_test(knob: str, module: str) -> None:
    struct = next(s for _, s, m in FAKES if m == module)
    assert setters(knob, module), (
        f"{struct.__name__}.{knob} is set by no test under tests/: add one that flips it "
        f"({knob}=<a non-default value>), shows the fake behaving differently, and shows "
        "Workbridge still doing the right thing against it"
    )


def test_the_search_sees_keywords_and_nothing_else() -> None:
    pattern = setting("first_id")
    for text in ("FakeMocoBehaviour(first_id=5)", "moco(first_id = 5)", "dict(first_id=7)"):
        assert pattern.search(text), text
    for text in (
        "behaviour.first_id == 1",
        "fake.first_id = 5",
        "my_first_id=5",
        "first_ids=5",
        "first_id: int = 1",
    ):
        assert not pattern.search(text), text


def test_every_fake_has_knobs_and_test_files() -> None:
    for vendor, struct, module in FAKES:
        assert msgspec.structs.fields(struct), vendor
        assert sources(module), f"no test file uses {module}"
