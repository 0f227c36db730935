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
query_value_chars_max: Final = 2048  # each query parameter name and value
# API worker processes of one `kassa up` / `kassa api` (KASSA_HTTP_WORKERS): each holds its own
# batcher and database pool, so far past the cores they only add connections and lock contention.
http_workers_max: Final = 64
# The whole request body must arrive within this (408 otherwise): a 4 MiB body needs ~420 KB/s,
# while a client trickling one byte a second cannot hold a connection open. KASSA_HTTP_BODY_READ_TIMEOUT_S
# overrides it.
http_body_read_timeout_s: Final = 10.0
http_header_read_timeout_s: Final = 10.0  # request line and headers (granian's HTTP/1 setting)
# Net new container objects between the API process's young-generation collections (Python's
# default is 700). Sixty-odd requests in flight keep thousands of young objects alive, which the
# default threshold re-traverses (and promotes) many times per request; see docs/ledger-cost.md.
api_gc_young_threshold_objects: Final = 10_000
page_limit_default: Final = 50
page_limit_max: Final = 500

# Customers and payments (issue 8)
# A customer id leaves room for the rights holder's account id `payable:<id>:<CUR>` (64 chars).
customer_id_chars_max: Final = 52
customer_name_chars_max: Final = 200
customer_email_chars_max: Final = 254  # RFC 5321's path limit
topup_amount_minor_max: Final = 10**12  # per top-up; a provider would refuse more anyway
provider_callback_tolerance_s: Final = 300  # a callback signed longer ago (or ahead) is refused
provider_request_timeout_s: Final = 10.0  # each call from kassa to a provider, connect to last byte
provider_request_attempts_max: Final = 3  # of one charge or payout call (same idempotency key)
provider_callback_attempts_max: Final = 8  # deliveries of one callback by the sandbox provider
provider_callback_body_bytes_max: Final = 64 * 1024
pending_topup_timeout_s: Final = 7 * 24 * 3600  # a top-up the provider never answers expires
pending_withdrawal_timeout_s: Final = 14 * 24 * 3600  # payouts may take days to post or fail

# Money path
amount_minor_max: Final = 2**63 - 1  # bigint
batch_transfers_max: Final = 8000  # POST /v1/transfers/batch items
transaction_postings_max: Final = 128  # postings of one multi-leg transaction (a split, an FX leg pair, ...)
batcher_batch_max: Final = 512  # commands coalesced into one DB transaction
batcher_window_ms: Final = 1.0  # how long the batcher waits for more work once it has some
batcher_queue_max: Final = 20_000  # pending commands per process before 503
batcher_inflight_max: Final = 2  # concurrent batch transactions per process (measured: 2 beats 1 and 3)
hold_timeout_s_max: Final = 30 * 24 * 3600
hold_timeout_s_default: Final = 3600
expiry_sweep_batch_max: Final = 500
expiry_sweep_interval_s: Final = 1.0

# Idempotency
idempotency_retention_s: Final = 48 * 3600  # kept at least 24 h as promised; 48 h for margin
idempotency_purge_interval_s: Final = 60.0
idempotency_purge_batch_max: Final = 5_000  # rows deleted per purge pass

# Database
db_pool_size_max: Final = 12
db_statement_timeout_ms: Final = 30_000

# Webhooks and the notification log (notifications context)
webhook_endpoints_per_tenant_max: Final = 20
webhook_event_types_max: Final = 50  # entries in one endpoint's event_types
webhook_url_chars_max: Final = 2048
webhook_secret_bytes: Final = 32  # entropy of a generated signing secret (256 bits)
webhook_secret_rotation_grace_s: Final = 24 * 3600  # previous secret still signs after a rotation
webhook_signature_tolerance_s: Final = 300  # receivers reject signatures older or newer than this
webhook_request_timeout_s: Final = 10.0  # whole request, connect to last byte
# A registration resolves the URL's host to refuse internal targets; a name that does not answer
# within this is accepted (delivery resolves and vets it again).
webhook_registration_resolve_timeout_s: Final = 2.0
webhook_response_excerpt_bytes_max: Final = 1024  # of the receiver's reply, kept per attempt
# A claimed delivery is re-claimable only after this, well past the request timeout, so two
# workers never post the same attempt unless the first one stalled or died.
webhook_delivery_lease_s: Final = 60
webhook_delivery_batch_max: Final = 100  # deliveries claimed per query
webhook_delivery_inflight_max: Final = 64  # concurrent requests per delivery worker
webhook_delivery_poll_interval_s: Final = 1.0
# Retry schedule: attempt n waits min(base * 2**(n-1), cap), jittered to 50-100 %; 15 attempts
# span roughly 12-24 hours before the delivery is dead-lettered.
webhook_attempts_max: Final = 15
webhook_backoff_base_s: Final = 30.0
webhook_backoff_max_s: Final = 4 * 3600.0
notification_message_chars_max: Final = 500

# Process supervision (kassa up)
child_restart_delay_s_max: Final = 30.0  # backoff cap between restarts of a crashing child
child_stable_s: Final = 60.0  # a child up this long has its crash count reset
http_worker_stop_timeout_s: Final = 5  # an HTTP worker still stopping after this is killed
worker_stop_timeout_s: Final = 10.0  # `kassa worker` still stopping this long after SIGTERM exits at once
readiness_probe_timeout_s: Final = 2.0  # each dependency check of /readyz
broker_probe_cache_s: Final = 1.0  # /readyz re-probes the broker at most this often
retry_after_s: Final = 1  # Retry-After on 503s from a dependency outage or a full queue

# Observability
process_sample_interval_s: Final = 5.0  # refresh of the process CPU/memory and pool gauges
# Backups, recovery and failover: store/backup.py, store/replication.py and kassa.dr
wal_archive_timeout_s: Final = 60  # a WAL segment is archived at least this often while there are writes
wal_archive_wait_s: Final = 60  # a switched segment reaches the archive
backup_timeout_s: Final = 3600  # one pg_basebackup run
restore_timeout_s: Final = 3600  # replaying WAL up to the recovery target
backups_kept_default: Final = 7  # base backups `kassa backup` keeps (with the WAL they need)
standby_ready_timeout_s: Final = 120  # a new standby connects and streams
promote_timeout_s: Final = 60  # a standby leaves recovery after promotion

# Capacity planning: kassa.capacity
capacity_events_max: Final = 500  # events in one schedule file
capacity_audience_max: Final = 10**9  # expected audience of one event

# API keys (identity context)
api_keys_per_tenant_max: Final = 100  # live (not revoked) keys of one tenant
api_key_name_chars_max: Final = 200
api_key_scopes_max: Final = 32
api_key_lifetime_s_max: Final = 5 * 365 * 24 * 3600  # expires_at at most this far ahead
# A cached key is re-read after this even though revocations arrive at once by NOTIFY: a bound
# on staleness if a notification were ever lost while the listener still looked healthy.
api_key_cache_ttl_s: Final = 10.0
api_key_cache_size_max: Final = 10_000
api_key_touch_interval_s: Final = 60.0  # last_used_at is written at most this often per key
# Revocation at once in every process (kassa.identity.authn): a process trusts its key cache only
# within a lease its listener renews this often; a stalled process stops trusting it this long
# after its last renewal, and a revoker that gets no acknowledgement waits that long at most.
api_key_lease_s: Final = 3.0  # tolerates event-loop lag up to lease - renew before the cache turns off
api_key_lease_renew_s: Final = 0.5
api_key_lease_margin_s: Final = 0.25  # added to the lease the database records: clock rate skew between hosts
api_key_lease_query_s: Final = 5.0  # a renewal slower than this: the connection is taken for dead
api_key_ack_poll_s: Final = 0.005  # a revoker re-reads the listeners' acknowledgements this often
api_key_listener_row_keep_s: Final = 60.0  # a lapsed listener's row is deleted after this
api_key_ack_wait_s_max: Final = 10.0  # beyond the leases' bound: the database itself is in trouble (503)
api_key_listener_retry_s_max: Final = 5.0  # reconnect backoff cap of the LISTEN connection
api_key_rotation_overlap_s_default: Final = 24 * 3600  # old and new key both valid this long
api_key_rotation_overlap_s_max: Final = 30 * 24 * 3600

# Rate limits per API key (token bucket). The named default applies to every key without its own
# limit; KASSA_RATE_LIMIT_PER_S / KASSA_RATE_LIMIT_BURST change it per deployment. It is high on
# purpose: a limit protects the platform from one runaway client, not a tenant from itself.
rate_limit_per_s_default: Final = 10_000
rate_limit_burst_default: Final = 20_000
rate_limit_per_s_max: Final = 1_000_000
rate_limit_buckets_max: Final = 100_000  # in-process buckets (least recently used dropped)
rate_limit_redis_timeout_s: Final = 0.25  # a shared-limit check never stalls a request longer

# Admin audit log
audit_value_bytes_max: Final = 16 * 1024  # encoded JSON of one record's before or after

# Pay-per-view catalogue, purchases and refunds
content_title_chars_max: Final = 200
content_rights_holders_max: Final = 20  # holders sharing one content's revenue
content_prices_max: Final = 50  # currencies one content is priced in
content_replay_days_max: Final = 365  # replay window after a fixed window's end
content_access_duration_s_max: Final = 366 * 24 * 3600  # a from-first-play window's length
content_page_max: Final = 100
refund_retry_max: Final = 5  # recomputations when a concurrent refund of the same purchase won
entitlement_cache_entries_max: Final = 100_000  # in-process entitlement check cache
entitlement_cache_ttl_s: Final = 30.0  # bound on staleness from writes of other processes without Redis
entitlement_cache_redis_timeout_s: Final = 0.25  # a slower Redis answer: the check reads the database
purchase_retry_max: Final = 3  # re-pricings when the content changed or a stale view missed an entitlement
ppv_content_cache_entries_max: Final = 10_000  # contents a process keeps for pricing purchases
ppv_wallet_cache_entries_max: Final = 100_000  # (customer, currency) -> wallet account, per process
ppv_wallet_reads_max: Final = 500  # wallet lookups of concurrent purchases read by one statement
ppv_buyers_index_max: Final = 100_000  # buyers of one content kept to answer "no entitlement" from memory
ppv_buyers_index_contents_max: Final = 100  # contents whose buyers a process keeps
# Compliance
# A payment held for review stays pending this long; undecided, the ledger expires the hold.
review_hold_timeout_s: Final = 7 * 24 * 3600
review_reason_chars_max: Final = 500
# Manual ledger adjustments: few postings, so the audit record's before/after (every touched
# account's balances) always fits audit_value_bytes_max.
adjustment_postings_max: Final = 10
adjustment_reason_chars_max: Final = 500
rules_per_tenant_max: Final = 100
sanctions_list_entries_max: Final = 2_000_000  # rows of one loaded CSV
sanctions_name_chars_max: Final = 512
kyc_callback_attempts_max: Final = 5  # the sandbox provider's deliveries of one result
kyc_callback_timeout_s: Final = 10.0
kyc_callback_tolerance_s: Final = 300  # a callback signed longer ago (or ahead) is refused
# Event consumers
# Batch messages a worker process keeps decoded: its consumers fetch the same messages, a few
# milliseconds apart when they keep up, further apart while they catch up on a backlog, and a
# later one reuses the first one's decode. Bounded by count and by the messages' bytes (the
# decoded events take a few times that): about 64 typical batches of 20-60 transfer events,
# 8 of the largest messages (relay_message_bytes_max).
consumer_decoded_batches_max: Final = 64
consumer_decoded_batches_bytes_max: Final = 4 * 1024 * 1024
