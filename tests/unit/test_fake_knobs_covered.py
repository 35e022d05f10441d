"""Every assumption knob a fake vendor has is flipped by at least one test.

A fake's behaviour struct (`FakeMocoBehaviour`, `FakeMobilityWorkBehaviour`,
`FakeClickMaintBehaviour`, `FakeCmoBehaviour`, `FakeCloudworkProBehaviour`) holds every reading
of what the vendor's document leaves open. Workbridge must work under each reasonable reading,
so each field must be set away from its default somewhere under tests/: a knob added without
such a test fails here, by name.

"Set away from its default" is read from the test sources' syntax trees: a test file that uses
the vendor's fake module passes the field as a keyword argument, with a value other than the
field's default, to one of

- the behaviour struct itself: `FakeMocoBehaviour(first_id=5)`;
- `replace(…)`: `msgspec.structs.replace(behaviour, first_id=5)`;
- `dict(…)`, the knobs of a parametrization: `pytest.param(dict(first_id=5), …)`;
- a knob helper: a function under tests/ that takes `**knobs` and builds the struct or calls
  `replace` with `**…` (`moco(first_id=5)`), or a fixture that yields or returns one
  (`await start(first_id=5)`).

A literal value (a number, string, tuple, dict, None, a bool, or the name of a module-level
constant holding one) must differ from the default; `DEFAULTS.first_id` passes the default on
and does not count; any other expression (a parametrized name, a call) counts, as only running
the test would tell. Spell a knob out as a keyword (not `**{"first_id": 5}`) so that this test
can see it.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
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

Function = ast.FunctionDef | ast.AsyncFunctionDef


class _Unknown:
    """A value only running the test would tell (a parametrized name, a call)."""


UNKNOWN = _Unknown()


@dataclass(frozen=True)
class Source:
    """One test file: where it is, what it says, and its module-level literal constants."""

    where: str
    text: str
    tree: ast.Module

    @classmethod
    def parse(cls, where: str, text: str) -> Source:
        return cls(where, text, ast.parse(text))

    @property
    def constants(self) -> dict[str, object]:
        found: dict[str, object] = {}
        for node in self.tree.body:
            if isinstance(node, ast.Assign) and len(node.targets) == 1:
                target, value = node.targets[0], node.value
            elif isinstance(node, ast.AnnAssign) and node.value is not None:
                target, value = node.target, node.value
            else:
                continue
            if isinstance(target, ast.Name):
                literal = _literal(value)
                if literal is not UNKNOWN:
                    found[target.id] = literal
        return found


@dataclass(frozen=True)
class Setting:
    """One place a test sets a knob, and whether the value differs from the default."""

    where: str
    flipped: bool


def _literal(node: ast.expr) -> object:
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return UNKNOWN


def _callee(func: ast.expr) -> str | None:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return None


def _functions(tree: ast.AST) -> Iterator[Function]:
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield node


def _builds(function: Function, struct_name: str) -> bool:
    """Whether `function` takes `**knobs` and builds the struct or `replace`s with `**…`."""
    if function.args.kwarg is None:
        return False
    return any(
        isinstance(node, ast.Call)
        and _callee(node.func) in (struct_name, "replace")
        and any(keyword.arg is None for keyword in node.keywords)
        for node in ast.walk(function)
    )


def knob_helpers(sources: Sequence[Source], struct_name: str) -> set[str]:
    """Names of the functions (and fixtures handing one out) that pass knobs to the struct."""
    names: set[str] = set()
    for source in sources:
        for function in _functions(source.tree):
            if _builds(function, struct_name):
                names.add(function.name)
            inner = {
                nested.name
                for nested in function.body
                if isinstance(nested, ast.FunctionDef | ast.AsyncFunctionDef)
                and _builds(nested, struct_name)
            }
            handed_out = any(
                isinstance(node, ast.Yield | ast.Return)
                and isinstance(node.value, ast.Name)
                and node.value.id in inner
                for node in ast.walk(function)
            )
            if handed_out:
                names.add(function.name)
    return names


def _normal(value: object) -> object:
    """`value` for comparing: a literal `[…]` sets a tuple field as well as `(…)` does."""
    if isinstance(value, list | tuple):
        return [_normal(item) for item in value]
    if isinstance(value, dict):
        return {key: _normal(item) for key, item in value.items()}
    return value


def _flips(keyword: ast.keyword, default: object, constants: dict[str, object]) -> bool:
    node = keyword.value
    if isinstance(node, ast.Attribute) and node.attr == keyword.arg:
        return False  # `DEFAULTS.first_id`: the default passed on
    value = _literal(node)
    if value is UNKNOWN and isinstance(node, ast.Name):
        value = constants.get(node.id, UNKNOWN)
    if value is UNKNOWN:
        return True
    return _normal(value) != _normal(default)


def settings(
    sources: Sequence[Source], helper_sources: Sequence[Source], struct: type[msgspec.Struct]
) -> dict[str, list[Setting]]:
    """Field name -> every place in `sources` that sets it (see the module docstring)."""
    defaults = struct()
    fields = {field.name for field in msgspec.structs.fields(struct)}
    carriers = {struct.__name__, "replace", "dict"} | knob_helpers(helper_sources, struct.__name__)
    found: dict[str, list[Setting]] = {name: [] for name in fields}
    for source in sources:
        constants = source.constants
        for node in ast.walk(source.tree):
            if not isinstance(node, ast.Call) or _callee(node.func) not in carriers:
                continue
            for keyword in node.keywords:
                if keyword.arg in fields:
                    flipped = _flips(keyword, getattr(defaults, keyword.arg), constants)
                    where = f"{source.where}:{keyword.value.lineno}"
                    found[keyword.arg].append(Setting(where, flipped))
    return found


@cache
def all_test_sources() -> tuple[Source, ...]:
    """Every test file under tests/ but this one."""
    return tuple(
        Source.parse(str(path.relative_to(TESTS.parent)), path.read_text(encoding="utf-8"))
        for path in sorted(TESTS.rglob("*.py"))
        if path.resolve() != THIS
    )


@cache
def vendor_settings(module: str) -> dict[str, list[Setting]]:
    """The knob settings of the fake in `module`, from the test files that use it."""
    struct = next(s for _, s, m in FAKES if m == module)
    using = [source for source in all_test_sources() if module in source.text]
    return settings(using, all_test_sources(), struct)


KNOBS = [
    pytest.param(field.name, module, id=f"{vendor}.{field.name}")
    for vendor, struct, module in FAKES
    for field in msgspec.structs.fields(struct)
]


@pytest.mark.parametrize(("knob", "module"), KNOBS)
def test_every_knob_is_flipped_by_a_test(knob: str, module: str) -> None:
    struct = next(s for _, s, m in FAKES if m == module)
    found = vendor_settings(module)[knob]
    default = getattr(struct(), knob)
    assert any(setting.flipped for setting in found), (
        f"{struct.__name__}.{knob} is set away from its default ({default!r}) by no test "
        f"under tests/ (set to the default at: {[s.where for s in found] or 'nowhere'}): add "
        f"one that flips it ({knob}=<a non-default value>), shows the fake behaving "
        "differently, and shows Workbridge still doing the right thing against it"
    )


def test_every_fake_has_knobs_and_test_files() -> None:
    for vendor, struct, module in FAKES:
        assert msgspec.structs.fields(struct), vendor
        assert any(module in source.text for source in all_test_sources()), f"no test uses {module}"


# --------------------------------------------------------------------------- the reader itself


class Knobs(msgspec.Struct, frozen=True, kw_only=True):
    first_id: int = 1
    names: tuple[str, ...] = ("a", "b")
    limit: float | None = 10.0


def flipped(text: str) -> dict[str, bool]:
    """Knob -> whether `text` (one test file) flips it."""
    source = Source.parse("t.py", text)
    found = settings([source], [source], Knobs)
    return {name: any(s.flipped for s in places) for name, places in found.items() if places}


def test_a_value_other_than_the_default_is_a_flip_and_the_default_is_not() -> None:
    assert flipped("Knobs(first_id=5)") == {"first_id": True}
    assert flipped("Knobs(first_id=1, names=['a', 'b'], limit=10)") == {
        "first_id": False,
        "names": False,
        "limit": False,
    }
    assert flipped("Knobs(names=('a',), limit=None)") == {"names": True, "limit": True}


def test_constants_and_the_default_passed_on_are_read_and_other_values_count() -> None:
    assert flipped("ONE = 1\nFIVE: int = 5\nKnobs(first_id=ONE)\nKnobs(limit=FIVE)") == {
        "first_id": False,
        "limit": True,
    }
    assert flipped("Knobs(first_id=DEFAULTS.first_id)") == {"first_id": False}
    assert flipped("Knobs(first_id=n)\nKnobs(limit=float('inf'))") == {
        "first_id": True,
        "limit": True,
    }


def test_replace_dict_and_knob_helpers_carry_knobs_and_other_calls_do_not() -> None:
    text = """
def helper(**knobs):
    settings = {"limit": 1.0}
    settings.update(knobs)
    return Knobs(**settings)

def behave(fake, **changes):
    fake.behaviour = msgspec.structs.replace(fake.behaviour, **changes)

async def start(clock):
    async def _start(**knobs):
        return Knobs(**knobs)
    yield _start

def test_it(start):
    helper(first_id=2)
    behave(fake, names=())
    start(limit=3.0)
    other(first_id=9)
"""
    assert flipped(text) == {"first_id": True, "names": True, "limit": True}
    assert flipped("other(first_id=9)\nrun(names=())") == {}
    assert flipped("pytest.param(dict(first_id=9))") == {"first_id": True}
    assert flipped("Knobs(**{'first_id': 9})") == {}
