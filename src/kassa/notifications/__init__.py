"""Notifications context: webhook endpoints and deliveries, and the per-account notification log.

Everything here is fed by events (see `consumers.py`) and delivered by `delivery.py`; nothing
in this context runs on the money path.
"""

from kassa.notifications.adapters.secret_store import count_plaintext_secrets, seal_plaintext_secrets

# The signature scheme is public: the payments context verifies provider callbacks with it.
from kassa.notifications.domain.signing import new_secret, sign, verify
from kassa.notifications.errors import (
    SignatureHeaderMalformed,
    SignatureInvalid,
    SignatureMismatch,
    SignatureTimestampOutOfRange,
)

__all__ = [
    "SignatureHeaderMalformed",
    "SignatureInvalid",
    "SignatureMismatch",
    "SignatureTimestampOutOfRange",
    "count_plaintext_secrets",
    "new_secret",
    "seal_plaintext_secrets",
    "sign",
    "verify",
]
