"""kassa: a double-entry ledger and the payment products on top of it."""

__version__ = "0.1.0"
