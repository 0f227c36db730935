"""Money: an integer count of minor units with an explicit currency. Never a float.

The ISO 4217 table below lists active codes with their minor-unit exponent. `Decimal` is used
only to parse human input (`parse_major`), which rejects more places than the currency has.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from kassa.shared.errors import InvalidRequest
from kassa.shared.invariants import invariant
from kassa.shared.limits import amount_minor_max

# Exponents per ISO 4217 (2024 list). Codes absent here are rejected as unknown.
_EXPONENT_0 = "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF"
_EXPONENT_3 = "BHD IQD JOD KWD LYD OMR TND"
_EXPONENT_4 = "CLF UYW"
_EXPONENT_2 = (
    "AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BMD BND BOB BOV BRL BSD BTN BWP "
    "BYN BZD CAD CDF CHE CHF CHW CNY COP COU CRC CUC CUP CVE CZK DKK DOP DZD EGP ERN ETB EUR "
    "FJD FKP GBP GEL GHS GIP GMD GTQ GYD HKD HNL HTG HUF IDR ILS INR IRR JMD KES KGS KHR KPW "
    "KYD KZT LAK LBP LKR LRD LSL MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MXV MYR MZN "
    "NAD NGN NIO NOK NPR NZD PAB PEN PGK PHP PKR PLN QAR RON RSD RUB SAR SBD SCR SDG SEK SGD "
    "SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT TOP TRY TTD TWD TZS UAH USD USN UYU UZS "
    "VED VES WST XCD XCG YER ZAR ZMW ZWG"
)

CURRENCY_EXPONENTS: dict[str, int] = {
    **dict.fromkeys(_EXPONENT_0.split(), 0),
    **dict.fromkeys(_EXPONENT_2.split(), 2),
    **dict.fromkeys(_EXPONENT_3.split(), 3),
    **dict.fromkeys(_EXPONENT_4.split(), 4),
}


class UnknownCurrency(InvalidRequest):
    code = "invalid_request"  # bad input like any other; the detail names the currency
    title = "Unknown currency"


def currency_exponent(currency: str) -> int:
    """Minor-unit exponent of an ISO 4217 code; raises UnknownCurrency."""
    exponent = CURRENCY_EXPONENTS.get(currency)
    if exponent is None:
        raise UnknownCurrency(f"'{currency}' is not an active ISO 4217 currency code")
    return exponent


@dataclass(frozen=True, slots=True)
class Money:
    amount_minor: int
    currency: str

    def __post_init__(self) -> None:
        invariant(isinstance(self.amount_minor, int), "money is an int count of minor units")
        invariant(self.currency in CURRENCY_EXPONENTS, "money carries a known currency")
        invariant(abs(self.amount_minor) <= amount_minor_max, "money fits a bigint")

    def format(self) -> str:
        exponent = CURRENCY_EXPONENTS[self.currency]
        sign = "-" if self.amount_minor < 0 else ""
        whole, frac = divmod(abs(self.amount_minor), 10**exponent)
        if exponent == 0:
            return f"{sign}{whole} {self.currency}"
        return f"{sign}{whole}.{frac:0{exponent}d} {self.currency}"


def parse_major(text: str, currency: str) -> Money:
    """Parse a human amount such as "12.34" into minor units; rejects excess precision."""
    exponent = currency_exponent(currency)
    try:
        value = Decimal(text)
    except InvalidOperation as exc:
        raise InvalidRequest(f"'{text}' is not a decimal amount") from exc
    if not value.is_finite():
        raise InvalidRequest("amount must be finite")
    scaled = value.scaleb(exponent)
    if scaled != scaled.to_integral_value():
        raise InvalidRequest(f"{currency} allows at most {exponent} decimal places")
    minor = int(scaled)
    if abs(minor) > amount_minor_max:
        raise InvalidRequest("amount is too large")
    return Money(minor, currency)


def allocate(total_minor: int, weights: list[int]) -> list[int]:
    """Split `total_minor` by integer weights exactly: floor each share, then hand the leftover
    minor units out by largest remainder, ties broken by position. Shares always sum to total."""
    invariant(total_minor >= 0, "allocate takes a non-negative total")
    invariant(bool(weights) and all(w >= 0 for w in weights) and sum(weights) > 0, "weights are valid")
    weight_sum = sum(weights)
    shares = [total_minor * w // weight_sum for w in weights]
    remainders = [total_minor * w % weight_sum for w in weights]
    leftover = total_minor - sum(shares)
    order = sorted(range(len(weights)), key=lambda i: (-remainders[i], i))
    for i in order[:leftover]:
        shares[i] += 1
    invariant(sum(shares) == total_minor, "allocation sums to the total")
    return shares
