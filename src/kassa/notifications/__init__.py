"""Notifications context: webhook endpoints and deliveries, and the per-account notification log.

Everything here is fed by events (see `consumers.py`) and delivered by `delivery.py`; nothing
in this context runs on the money path.
"""

from kassa.notifications.adapters.secret_store import count_plaintext_secrets, seal_plaintext_secrets

__all__ = ["count_plaintext_secrets", "seal_plaintext_secrets"]
