"""RFC 8288 Link header parsing."""

from __future__ import annotations

import pytest

from adapters.core.pagination import link_url

FULL = (
    '<https://a.example/p?page=1>; rel="first", <https://a.example/p?page=2>; rel="prev", '
    '<https://a.example/p?page=4>; rel="next", <https://a.example/p?page=9>; rel="last"'
)


def test_moco_style_next() -> None:
    header = '<https://acme.mocoapp.com/api/v1/projects.json?page=4>; rel="next"'
    assert link_url(header) == "https://acme.mocoapp.com/api/v1/projects.json?page=4"


@pytest.mark.parametrize(
    ("rel", "url"),
    [
        ("first", "https://a.example/p?page=1"),
        ("prev", "https://a.example/p?page=2"),
        ("next", "https://a.example/p?page=4"),
        ("last", "https://a.example/p?page=9"),
        ("alternate", None),
    ],
)
def test_several_rels(rel: str, url: str | None) -> None:
    assert link_url(FULL, rel) == url


def test_unquoted_rel() -> None:
    assert link_url("<https://a.example/n>; rel=next") == "https://a.example/n"


def test_multi_valued_rel() -> None:
    assert link_url('<https://a.example/n>;rel="next last"') == "https://a.example/n"
    assert link_url('<https://a.example/n>;rel="next last"', "last") == "https://a.example/n"


def test_other_params_before_rel() -> None:
    assert link_url('<https://a.example/n>; type="text/html"; rel="next"') == "https://a.example/n"


def test_comma_inside_the_url() -> None:
    assert link_url('<https://a.example/p?ids=1,2>; rel="next"') == "https://a.example/p?ids=1,2"


@pytest.mark.parametrize(
    "header", [None, "", '<https://a.example/p?page=2>; rel="prev"', "garbage", "<x>"]
)
def test_no_next(header: str | None) -> None:
    assert link_url(header) is None


def test_comma_inside_a_quoted_param() -> None:
    assert link_url('<https://a.example/n>; title="page 2, next"; rel="next"') == (
        "https://a.example/n"
    )


def test_rel_is_case_insensitive() -> None:
    assert link_url('<https://a.example/n>; rel="Next"') == "https://a.example/n"
