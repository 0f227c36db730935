"""Card and account numbers: checked (Luhn for cards), reduced to their last four characters,
and never repeated in an error message."""

from __future__ import annotations

import pytest

from kassa.payments.domain.instruments import check_account_number, check_card, luhn_ok
from kassa.payments.errors import InvalidDestination, InvalidPaymentMethod


def test_test_cards_pass_luhn_and_keep_only_their_last_four_digits() -> None:
    for card in ("4242424242424242", "4000000000000002", "5555555555554444", "378282246310005"):
        assert luhn_ok(card)
        assert check_card(card) == card[-4:]


@pytest.mark.parametrize("card", ["4242424242424241", "42424242424", "4242 4242 4242 4242", "\uff14" * 16, ""])
def test_an_invalid_card_is_refused_without_echoing_it(card: str) -> None:
    with pytest.raises(InvalidPaymentMethod) as refused:
        check_card(card)
    assert not card or card not in str(refused.value)


def test_account_numbers_keep_their_last_four_characters() -> None:
    assert check_account_number("000123456789") == "6789"
    assert check_account_number("DE89370400440532013000") == "3000"
    assert check_account_number("gb82west12345698765432") == "5432"


@pytest.mark.parametrize("number", ["123", "0001-2345", "x" * 35, "0001 2345 6789"])
def test_an_invalid_account_number_is_refused_without_echoing_it(number: str) -> None:
    with pytest.raises(InvalidDestination) as refused:
        check_account_number(number)
    assert number not in str(refused.value)
