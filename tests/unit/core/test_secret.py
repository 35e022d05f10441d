"""Secret: masks itself everywhere a value could be printed."""

from __future__ import annotations

import msgspec

from adapters.core.secret import Secret


def test_repr_and_str_mask_the_value() -> None:
    s = Secret("hunter2")
    assert repr(s) == "Secret('***')"
    assert str(s) == "Secret('***')"
    assert f"{s}" == "Secret('***')"
    assert "hunter2" not in repr([s, {"k": s}])


def test_reveal_gives_the_value() -> None:
    assert Secret("hunter2").reveal() == "hunter2"


def test_equality_and_hash_follow_the_value() -> None:
    assert Secret("a") == Secret("a")
    assert Secret("a") != Secret("b")
    assert Secret("a") != "a"
    assert hash(Secret("a")) == hash(Secret("a"))
    assert len({Secret("a"), Secret("a"), Secret("b")}) == 2


def test_truthiness() -> None:
    assert bool(Secret("x")) is True
    assert bool(Secret("")) is False


def test_secret_inside_a_struct_repr_is_masked() -> None:
    class Holder(msgspec.Struct):
        token: Secret

    assert "topsecret" not in repr(Holder(Secret("topsecret")))


def test_no_instance_dict() -> None:
    # __slots__: nothing else can be attached (and leak through vars()).
    s = Secret("v")
    assert not hasattr(s, "__dict__")
