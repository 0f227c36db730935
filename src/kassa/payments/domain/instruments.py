"""Payment instruments as the API receives them: a card number (checked, then reduced to its last
four digits for storage) and a payout destination (an account number, reduced the same way).
Messages never repeat the number."""

from __future__ import annotations

from kassa.payments.errors import InvalidDestination, InvalidPaymentMethod

_CARD_DIGITS_MIN = 12
_CARD_DIGITS_MAX = 19
_ACCOUNT_CHARS_MIN = 4
_ACCOUNT_CHARS_MAX = 34  # an IBAN's maximum


def luhn_ok(digits: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2 == 1:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def check_card(number: str) -> str:
    """The card's last four digits. Raises InvalidPaymentMethod."""
    if not (number.isascii() and number.isdigit() and _CARD_DIGITS_MIN <= len(number) <= _CARD_DIGITS_MAX):
        raise InvalidPaymentMethod(f"card number must be {_CARD_DIGITS_MIN}-{_CARD_DIGITS_MAX} digits")
    if not luhn_ok(number):
        raise InvalidPaymentMethod("card number fails its check digit (Luhn)")
    return number[-4:]


def check_account_number(number: str) -> str:
    """The destination account's last four characters. Raises InvalidDestination."""
    if not (number.isascii() and number.isalnum() and _ACCOUNT_CHARS_MIN <= len(number) <= _ACCOUNT_CHARS_MAX):
        raise InvalidDestination(
            f"account_number must be {_ACCOUNT_CHARS_MIN}-{_ACCOUNT_CHARS_MAX} letters or digits"
            " (an IBAN or a local number)"
        )
    return number[-4:].upper()
