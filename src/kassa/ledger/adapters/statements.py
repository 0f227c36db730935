"""SQL of the ledger engine: the lock queries and the one write statement of a batch.

Every write of a batch goes in one statement: one round trip, and each table's rows travel as a
single JSON document. Sibling CTEs cannot see each other's rows; the posting engine never needs
them to (a transfer or transaction created and changed in one batch is inserted in its final
state), except that the entries of a new transaction read its `seq` from the insert's RETURNING.
A transaction is one row: its postings are arrays on it (migration 0070), set at creation and
changed (posted amounts) with its status.
A batch without multi-leg transactions uses the statement without their CTEs, so the transfer
path plans and runs exactly the statement it always did; a batch with Idempotency-Keys adds the
insert of their records (with their responses) to the same statement.
"""

from __future__ import annotations

import msgspec

from kassa.events.outbox import OUTBOX_INSERT
from kassa.ledger.adapters.rows import LOCKED_ACCOUNT_COLUMNS, TRANSACTION_COLUMNS, TRANSFER_COLUMNS
from kassa.store import idempotency

# The keys travel as one JSON document (`lock_keys`), not as arrays: PostgreSQL plans a prepared
# statement with its parameters' values for its first five runs, then keeps the generic plan
# unless the custom ones looked cheaper. With arrays they do for batches of under ten rows (the
# planner knows their length, and assumes ten in the generic plan), so a connection whose first
# batches were small planned these statements again on every run (136 us for the reservation
# and account locks of a one-transfer batch, measured with pg_stat_statements.track_planning).
# A JSON document is 100 rows to the planner either way, and the generic plan is kept.
#
# Each lock query probes its rows one by one, in the order given (callers pass keys sorted by
# (tenant, id), so that two batches always lock in the same order and never deadlock): a
# LATERAL subquery with FOR UPDATE is never flattened into a join. A join would leave the plan
# to statistics, and row-level security gives the planner only `tenant_id = ANY(<the scope>)`
# to estimate with: with stale statistics (a fresh or fast-growing table, one big tenant among
# many small ones) it picks a hash join over a scan of every row of the tenant, as the
# benchmark's plans showed (all 1,000 accounts read per batch; 5 ms per batch for a tenant of
# 30,000 accounts instead of 0.1 ms).
LOCK_TRANSFERS = f"""
SELECT t.* FROM json_to_recordset($1::json) AS k(tn text, i text)
CROSS JOIN LATERAL (
    SELECT {TRANSFER_COLUMNS} FROM transfers t WHERE t.tenant_id = k.tn AND t.id = k.i FOR UPDATE OF t
) t
"""
LOCK_TRANSACTIONS = f"""
SELECT t.* FROM json_to_recordset($1::json) AS k(tn text, i text)
CROSS JOIN LATERAL (
    SELECT {TRANSACTION_COLUMNS} FROM transactions t WHERE t.tenant_id = k.tn AND t.id = k.i FOR UPDATE OF t
) t
"""
# The outer clock_timestamp() is evaluated as each row leaves the locking probes, so the last
# row's value is a database time taken after every lock of the batch is held.
LOCK_ACCOUNTS = f"""
SELECT a.*, clock_timestamp() AS locked_at FROM json_to_recordset($1::json) AS k(tn text, i text)
CROSS JOIN LATERAL (
    SELECT {LOCKED_ACCOUNT_COLUMNS} FROM accounts a WHERE a.tenant_id = k.tn AND a.id = k.i FOR UPDATE OF a
) a
"""

_ENCODER = msgspec.json.Encoder()


def lock_keys(keys: list[tuple[str, str]]) -> str:
    """The argument of a lock query: (tenant, id) pairs in lock order."""
    return _ENCODER.encode([{"tn": tenant, "i": ident} for tenant, ident in keys]).decode()


# The balance update names the accounts it changes twice: joined with its JSON rows, and as an
# array of their ids (`id = ANY`, an InitPlan run once). Joined alone, with a JSON document that
# is 100 rows to the planner whatever it holds, it was planned as a hash join over a scan of all
# of the tenant's accounts (the RLS filter evaluated on each), the cheaper plan on paper for a
# tenant of up to some 8,000 accounts. The array lets the accounts side be an index scan of
# exactly those rows, which the planner takes with statistics and without; the join stays a
# hash join (linear in the rows either way), so no plan can be worse than the one it replaces.
# (Planner settings that force one probe per row were measured too, and dropped: on a table
# without statistics they turn the join into a nested loop over every account, docs/ledger-cost.md.)
# The rows are parsed once, into a materialized CTE that both read: parsing JSON is 30% of the
# backend's instructions per transfer, and these rows were parsed twice (docs/ledger-cost.md).
_BALANCES = """
WITH balance_rows AS MATERIALIZED (
    SELECT * FROM json_to_recordset($1::json) AS x(t text, i text, dp bigint, cp bigint, dq bigint, cq bigint)
), balances AS (
    UPDATE accounts a SET debits_posted = x.dp, credits_posted = x.cp, debits_pending = x.dq,
                          credits_pending = x.cq
    FROM balance_rows x
    WHERE a.tenant_id = x.t AND a.id = x.i
      AND a.id = ANY (ARRAY(SELECT j.i FROM balance_rows j))
    RETURNING 1
), new_transfers AS (
    INSERT INTO transfers (tenant_id, id, debit_account_id, credit_account_id, currency, amount, posted_amount,
                           status, timeout_s, expires_at, reference, metadata, request_hash, created_at, updated_at)
    SELECT t, i, d, c, cur, amt, p, s, ts, exp, ref, md, decode(h, 'base64'), at, at
    FROM json_to_recordset($2::json) AS x(t text, i text, d text, c text, cur text, amt bigint, p bigint, s text,
                                          ts int, exp timestamptz, ref text, md jsonb, h text, at timestamptz)
    RETURNING 1
), changed_transfers AS (
    UPDATE transfers tr SET status = x.s, posted_amount = x.p, updated_at = x.at
    FROM json_to_recordset($3::json) AS x(t text, i text, s text, p bigint, at timestamptz)
    WHERE tr.tenant_id = x.t AND tr.id = x.i
    RETURNING 1
),"""
_TRANSFER_JOURNAL = """ journal AS (
    INSERT INTO entries (tenant_id, account_id, transfer_id, kind, side, currency, posted_amount, pending_amount,
                         debits_posted, credits_posted, debits_pending, credits_pending, created_at)
    SELECT t, a, tr, k, sd, cur, pa, qa, dp, cp, dq, cq, at
    FROM json_to_recordset($4::json) AS x(t text, a text, tr text, k text, sd text, cur text, pa bigint,
                                          qa bigint, dp bigint, cp bigint, dq bigint, cq bigint, at timestamptz)
    RETURNING 1
),"""
_TRANSACTIONS = """ new_transactions AS (
    INSERT INTO transactions (tenant_id, id, status, timeout_s, expires_at, reference, metadata, request_hash,
                              created_at, updated_at, debit_account_ids, credit_account_ids, currencies, amounts,
                              posted_amounts)
    SELECT t, i, s, ts, exp, ref, md, decode(h, 'base64'), at, at, d, c, cur, amt, p
    FROM json_to_recordset($6::json) AS x(t text, i text, s text, ts int, exp timestamptz, ref text, md jsonb,
                                          h text, at timestamptz, d text[], c text[], cur text[], amt bigint[],
                                          p bigint[])
    RETURNING tenant_id, id, seq
), changed_transactions AS (
    UPDATE transactions tr SET status = x.s, updated_at = x.at, posted_amounts = coalesce(x.p, tr.posted_amounts)
    FROM json_to_recordset($7::json) AS x(t text, i text, s text, at timestamptz, p bigint[])
    WHERE tr.tenant_id = x.t AND tr.id = x.i
    RETURNING 1
), journal AS (
    INSERT INTO entries (tenant_id, account_id, transfer_id, transaction_id, posting_index, transaction_seq, kind,
                         side, currency, posted_amount, pending_amount, debits_posted, credits_posted,
                         debits_pending, credits_pending, created_at)
    SELECT x.t, x.a, x.tr, x.tx, x.n, nt.seq, x.k, x.sd, x.cur, x.pa, x.qa, x.dp, x.cp, x.dq, x.cq, x.at
    FROM ROWS FROM (json_to_recordset($4::json) AS (t text, a text, tr text, tx text, n int, k text, sd text,
                                                    cur text, pa bigint, qa bigint, dp bigint, cp bigint,
                                                    dq bigint, cq bigint, at timestamptz))
         WITH ORDINALITY AS x(t, a, tr, tx, n, k, sd, cur, pa, qa, dp, cp, dq, cq, at, o)
    LEFT JOIN new_transactions nt ON nt.tenant_id = x.t AND nt.id = x.tx
    ORDER BY x.o  -- the join may reorder rows; entries take their seq in the order they were applied
    RETURNING 1
),"""
_EVENTS = """ events AS (""" + OUTBOX_INSERT.replace("$OUTBOX", "$5") + """ RETURNING 1)"""
_COUNTS = """
SELECT (SELECT count(*) FROM balances) AS balances, (SELECT count(*) FROM new_transfers) AS new_transfers,
       (SELECT count(*) FROM changed_transfers) AS changed_transfers, (SELECT count(*) FROM journal) AS journal,
       (SELECT count(*) FROM events) AS events"""
_TRANSACTION_COUNTS = """, (SELECT count(*) FROM new_transactions) AS new_transactions,
       (SELECT count(*) FROM changed_transactions) AS changed_transactions"""

WRITE_TRANSFERS = _BALANCES + _TRANSFER_JOURNAL + _EVENTS + _COUNTS
WRITE_ALL = _BALANCES + _TRANSACTIONS + _EVENTS + _COUNTS + _TRANSACTION_COUNTS

# The same statements for a batch with Idempotency-Keys: each reserved key's record, with its
# stored response, is inserted here once (`store.idempotency.reserve`), after the arguments
# above. A batch without keys keeps running exactly the statements above.
WRITE_ARGS_TRANSFERS = 5
WRITE_ARGS_ALL = 7
_KEY_COUNT = ", (SELECT count(*) FROM idempotency) AS idempotency_keys"
WRITE_TRANSFERS_KEYED = (
    _BALANCES
    + _TRANSFER_JOURNAL
    + _EVENTS
    + ","
    + idempotency.record_cte("idempotency", WRITE_ARGS_TRANSFERS + 1)
    + _COUNTS
    + _KEY_COUNT
)
WRITE_ALL_KEYED = (
    _BALANCES
    + _TRANSACTIONS
    + _EVENTS
    + ","
    + idempotency.record_cte("idempotency", WRITE_ARGS_ALL + 1)
    + _COUNTS
    + _TRANSACTION_COUNTS
    + _KEY_COUNT
)
