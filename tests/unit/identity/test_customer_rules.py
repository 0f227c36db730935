"""Customer rules: ISO 3166-1 alpha-2 countries, loose email check, and no personal data in a
customer's repr or in the message of a refusal."""

from __future__ import annotations

import pytest

from kassa.identity.domain.customers import Customer, check_customer
from kassa.identity.errors import InvalidCustomer
from kassa.shared.countries import COUNTRIES, is_country

NAME = "Grace Hopper"
EMAIL = "grace@example.com"


def _customer(**change: object) -> Customer:
    fields: dict[str, object] = {
        "tenant_id": "t",
        "id": "c",
        "type": "person",
        "name": NAME,
        "email": EMAIL,
        "country": "US",
        "metadata": {},
    } | change
    return Customer(**fields)  # type: ignore[arg-type]  # a test may set any field to a value the rules refuse


def test_the_country_table_holds_exactly_the_249_assigned_codes() -> None:
    assert len(COUNTRIES) == 249
    assert all(len(c) == 2 and c.isupper() for c in COUNTRIES)
    assert {"DE", "US", "GB", "SS", "CW", "AX", "BQ"} <= COUNTRIES
    for not_a_country in ("UK", "EU", "XK", "ZZ", "de", "DEU", ""):
        assert not is_country(not_a_country)


def test_a_valid_customer_passes() -> None:
    check_customer(_customer())
    check_customer(_customer(type="business", email=None, country="DE"))


@pytest.mark.parametrize(
    "change",
    [
        {"country": "XK"},
        {"country": "us"},
        {"email": "grace@localhost"},
        {"email": "grace hopper@example.com"},
        {"email": "a@b@example.com"},
        {"name": " \t "},
        {"name": "x" * 201},
        {"name": "Grace\nHopper"},
        {"type": "robot"},
        {"metadata": {str(i): i for i in range(51)}},
    ],
)
def test_an_invalid_customer_is_refused_without_its_personal_data_in_the_message(change: dict[str, object]) -> None:
    customer = _customer(**change)
    with pytest.raises(InvalidCustomer) as refused:
        check_customer(customer)
    for value in (customer.name, customer.email):
        if value and value.strip():
            assert value not in str(refused.value)


def test_the_repr_of_a_customer_hides_name_and_email() -> None:
    text = repr(_customer())
    assert NAME not in text and EMAIL not in text
    assert "'US'" in text
