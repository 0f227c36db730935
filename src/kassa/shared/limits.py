"""Every batch, page, retry, queue and size in kassa has a named limit, defined here.

Names carry the unit last (`_max`, `_ms`, `_s`, `_bytes`). Changing a limit is a product
decision; tests import these names instead of repeating the numbers.
"""

from __future__ import annotations

from typing import Final

# HTTP edge
request_body_bytes_max: Final = 4 * 1024 * 1024  # fits batch_transfers_max transfers with metadata
metadata_bytes_max: Final = 4096  # encoded JSON of one metadata object
metadata_keys_max: Final = 50
reference_chars_max: Final = 256
account_id_chars_max: Final = 64
tenant_name_chars_max: Final = 200
idempotency_key_chars_max: Final = 255
page_limit_default: Final = 50
page_limit_max: Final = 500

# Money path
amount_minor_max: Final = 2**63 - 1  # bigint
batch_transfers_max: Final = 8000  # POST /v1/transfers/batch items
batcher_batch_max: Final = 512  # commands coalesced into one DB transaction
batcher_window_ms: Final = 1.0  # how long the batcher waits for more work once it has some
batcher_queue_max: Final = 20_000  # pending commands per process before 503
batcher_inflight_max: Final = 3  # concurrent batch transactions per process
hold_timeout_s_max: Final = 30 * 24 * 3600
hold_timeout_s_default: Final = 3600
expiry_sweep_batch_max: Final = 500
expiry_sweep_interval_s: Final = 1.0

# Idempotency
idempotency_retention_s: Final = 48 * 3600  # kept at least 24 h as promised; 48 h for margin

# Database
db_pool_size_max: Final = 12
db_statement_timeout_ms: Final = 30_000
