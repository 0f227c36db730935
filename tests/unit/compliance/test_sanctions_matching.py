"""Sanctions name matching: hits survive spelling, script and order; near misses and common tokens do not hit."""

from __future__ import annotations

import pytest

from kassa.compliance.matching import MATCH_THRESHOLD, ListedName, distinctive, score, screen

LIST = [
    ListedName("os-bout", "Viktor Bout"),
    ListedName("os-bout", "Victor Anatolyevich But"),
    ListedName("os-kim", "Kim Jong Un"),
    ListedName("os-rosneft", "Rosneft Trading Holding Ltd"),
    ListedName("os-putin", "Владимир Путин"),
]


@pytest.mark.parametrize(
    ("name", "entry"),
    [
        ("Viktor Bout", "os-bout"),
        ("Victor Bout", "os-bout"),  # one-letter spelling variant
        ("VIKTOR  BOUT", "os-bout"),  # case and spacing
        ("Viktor Anatolyevich Bout", "os-bout"),  # a middle name around the listed name
        ("Jong-un Kim", "os-kim"),  # order and punctuation
        ("Wladimir Putin", "os-putin"),  # another script, transliterated
        ("Rosneft Trading GmbH", "os-rosneft"),  # another legal form, same distinctive name
    ],
)
def test_a_listed_name_is_a_hit_through_its_variants(name: str, entry: str) -> None:
    matches = screen(name, LIST)
    assert [m.entry_id for m in matches][:1] == [entry]
    assert matches[0].score >= MATCH_THRESHOLD


@pytest.mark.parametrize(
    "name",
    [
        "Vitor Boutros",  # looks alike, is another name
        "Bout",  # one shared token is not a person
        "Kim Jong",  # a common surname plus a given name
        "Acme Trading Holding Ltd",  # shares three of four tokens, all of them common
        "Trading Holding Ltd",  # nothing distinctive left
        "Hans Müller",
    ],
)
def test_near_misses_and_common_tokens_are_not_hits(name: str) -> None:
    assert screen(name, LIST) == []


def test_common_tokens_would_dominate_a_plain_fuzzy_ratio() -> None:
    from rapidfuzz import fuzz

    # Why the guard exists: to a plain ratio the raw names are close, the more so the longer
    # their shared legal form; without it the threshold would sit a few points from a false hit.
    assert fuzz.token_set_ratio("Acme Trading Holding Ltd", "Rosneft Trading Holding Ltd") > 85
    assert (
        fuzz.token_set_ratio("Acme International Trading Holding Ltd", "Rosneft International Trading Holding Ltd")
        >= MATCH_THRESHOLD
    )
    assert score("Acme Trading Holding Ltd", "Rosneft Trading Holding Ltd") < 50


def test_a_name_of_common_tokens_only_matches_only_itself() -> None:
    listed = [ListedName("x", "Holding Ltd")]
    assert [m.entry_id for m in screen("HOLDING LTD.", listed)] == ["x"]
    assert screen("Holding GmbH", listed) == []


def test_one_match_per_entry_with_its_best_alias() -> None:
    matches = screen("Viktor Bout", LIST)
    assert [(m.entry_id, m.listed_name, m.score) for m in matches] == [("os-bout", "Viktor Bout", 100.0)]


def test_normalisation_transliterates_and_drops_legal_forms() -> None:
    assert distinctive("Müller & Söhne GmbH") == "muller sohne"
    assert distinctive("THE Holding Co., Ltd.") == ""
