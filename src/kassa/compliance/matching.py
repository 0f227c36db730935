"""Sanctions screening of names: normalisation and fuzzy matching. No I/O, but outside `domain/`
because it leans on two libraries (`rapidfuzz`, `unidecode`) the domain may not import.

A name is transliterated to ASCII (`unidecode`: "Müller" and "Muller", "Владимир" and
"Vladimir" meet), case-folded, split on everything that is not a letter or a digit, and
stripped of *common tokens*: legal forms and filler words ("CORP", "LTD", "GMBH", "HOLDING",
"THE", ...). Those tokens are the known false-positive trap of name screening: "Acme Trading
Holding Ltd" and "Rosneft Trading Holding Ltd" share three of four tokens and a plain fuzzy
ratio calls them a match. Only the *distinctive* tokens left over are compared.

Score (0-100), the highest of:
- `token_sort_ratio` of the distinctive tokens (order-free: "Kim Jong Un" = "Un Kim Jong");
  catches spelling variants ("Viktor Bout" / "Victor Bout").
- `token_set_ratio`, but only when the listed name keeps at least two distinctive tokens and
  the candidate at least as many: it sees a listed name inside a longer one ("Viktor
  Anatolyevich Bout" contains "Viktor Bout"). The other way round it would call every part of
  a listed name a hit ("Kim Jong" inside "Kim Jong Un", "Bout" inside "Viktor Bout").

A name whose distinctive tokens are all gone (a customer called "Holding Ltd") matches only an
identical normalised name. `MATCH_THRESHOLD` is the documented cut-off (docs/compliance.md).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from rapidfuzz import fuzz, process
from unidecode import unidecode

# 90 keeps one-letter spelling variants of short two-token names ("Viktor Bout" / "Victor Bout":
# 91, "Ivan Petrov" / "Ivana Petrova": 92, worth an operator's look) and drops names that only
# look alike ("Vitor Boutros" / "Viktor Bout": 83).
MATCH_THRESHOLD = 90.0

COMMON_TOKENS = frozenset(
    """
    ag and as bv co company corp corporation de des du enterprise enterprises establishment
    fze gmbh group holding holdings inc incorporated intl international jsc kg limited llc
    llp ltd nv of oao ooo pjsc plc pte pty sa sarl sas services spa srl the trading zao
    """.split()
)

_NON_ALNUM = re.compile(r"[^a-z0-9]+")


def tokens(name: str) -> tuple[str, ...]:
    """All tokens of a name, transliterated and lower-cased."""
    return tuple(t for t in _NON_ALNUM.split(unidecode(name).casefold()) if t)


def distinctive(name: str) -> str:
    """The name's distinctive tokens, sorted, joined by spaces; '' if none is left."""
    return " ".join(sorted(t for t in tokens(name) if t not in COMMON_TOKENS))


def score(candidate: str, listed: str) -> float:
    """Similarity (0-100) of two names as screening sees them (see the module docstring)."""
    a, b = distinctive(candidate), distinctive(listed)
    if not a or not b:
        return 100.0 if " ".join(tokens(candidate)) == " ".join(tokens(listed)) and tokens(listed) else 0.0
    best = fuzz.token_sort_ratio(a, b)
    if a.count(" ") >= b.count(" ") >= 1:
        best = max(best, fuzz.token_set_ratio(a, b))
    return float(best)


@dataclass(frozen=True, slots=True)
class ListedName:
    entry_id: str  # the list's own id (OpenSanctions `id`)
    name: str  # the name or alias as listed


@dataclass(frozen=True, slots=True)
class Match:
    entry_id: str
    listed_name: str
    score: float


@dataclass(frozen=True, slots=True)
class SanctionsIndex:
    """A list's names with their distinctive keys computed once (normalising a long list per
    screening would cost more than the matching)."""

    names: tuple[ListedName, ...]
    keys: tuple[str, ...]

    @classmethod
    def build(cls, names: list[ListedName]) -> SanctionsIndex:
        return cls(tuple(names), tuple(distinctive(item.name) for item in names))

    def screen(self, candidate: str, threshold: float = MATCH_THRESHOLD) -> list[Match]:
        """Every listed name scoring at least `threshold` against `candidate`, best first; one
        match per entry (its best alias). A prefilter in C (rapidfuzz.process) keeps long lists fast."""
        query = distinctive(candidate)
        if query:
            # token_set_ratio >= both scores used by `score`: nothing the exact scorer keeps is lost.
            found = process.extract(query, self.keys, scorer=fuzz.token_set_ratio, score_cutoff=threshold, limit=None)
            indexes = [index for _, _, index in found]
        else:
            indexes = [i for i, key in enumerate(self.keys) if not key]
        best: dict[str, Match] = {}
        for index in indexes:
            item = self.names[index]
            value = score(candidate, item.name)
            if value >= threshold and (item.entry_id not in best or best[item.entry_id].score < value):
                best[item.entry_id] = Match(item.entry_id, item.name, value)
        return sorted(best.values(), key=lambda m: (-m.score, m.entry_id))


def screen(candidate: str, listed: list[ListedName], threshold: float = MATCH_THRESHOLD) -> list[Match]:
    """`SanctionsIndex.screen` over a list built for one call."""
    return SanctionsIndex.build(listed).screen(candidate, threshold)
