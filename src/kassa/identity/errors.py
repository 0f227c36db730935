"""Typed failures of the identity context's customers, each with a stable code.

    KassaError
    ├── InvalidRequest
    │   └── InvalidCustomer       invalid_customer
    ├── NotFound
    │   └── CustomerNotFound      customer_not_found
    └── Conflict
        └── CustomerExists        customer_exists

No message ever carries a customer's name or email: they are personal data, and problem
documents end up in clients' logs.
"""

from __future__ import annotations

from kassa.shared.errors import Conflict, InvalidRequest, NotFound


class InvalidCustomer(InvalidRequest):
    code = "invalid_customer"
    title = "Invalid customer"


class CustomerNotFound(NotFound):
    code = "customer_not_found"
    title = "Customer not found"


class CustomerExists(Conflict):
    code = "customer_exists"
    title = "A customer with this id already exists"


__all__ = ["CustomerExists", "CustomerNotFound", "InvalidCustomer"]
