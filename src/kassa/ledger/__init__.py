"""The ledger context: accounts, transfers, multi-leg transactions, holds, balances, journal.

This is the ledger's public face; other contexts import from here, never from its modules.
`LedgerService` (built by `kassa.bootstrap`) takes domain commands and returns domain results;
failures are the typed errors of `kassa.ledger.errors`, raised in the order documented there.
Nothing here knows HTTP: a caller that wants a replayable Idempotency-Key passes an `IdemClaim`
and a `receipt` that encodes the outcome as it wants it stored (the HTTP API stores its status
and body; without one the ledger stores `domain_receipt`).

A product commits its own rows and events in the same coalesced database transaction as its
postings with a `ProductWrite` (see `kassa.ledger.products`): the engine calls the product's
writer once per batch, set-based, with the jobs whose postings were applied, so a product row
exists exactly when its money moved. A shop's purchase split two ways (`shop_purchases` is the
product's own tenant table; `tests/integration/ledger/test_ledger_doc_example.py` runs this text):

    class Purchases:  # a ProductWriter: one per product type, called once per batch
        async def write(self, conn, applied, now):  # applied: [(Order, TransactionApplied), ...]
            await conn.execute("INSERT INTO shop_purchases (tenant_id, id, transaction_id, created_at)"
                               " SELECT t, i, x, $4 FROM unnest($1::text[], $2::text[], $3::text[]) u(t, i, x)",
                               [o.tenant_id for o, _ in applied], [o.id for o, _ in applied],
                               [a.transaction.id for _, a in applied], now)
            return [NewEvent(o.tenant_id, "PurchaseCompleted", "purchase", o.id, {"id": o.id}) for o, _ in applied]

    split = (NewPosting("buyer", "platform.fee", 150, "EUR"), NewPosting("buyer", "rights.a", 850, "EUR"))
    command = CreateTransaction(order.tenant_id, f"purchase-{order.id}", split, False, None, None, {}, fingerprint)
    applied = await ledger.execute(command, product=ProductWrite(PURCHASES, order))  # TransactionApplied
    # InsufficientFunds (extra["posting_index"] == 0) and no purchases row when the buyer is short.

Under load many such jobs share one transaction; the batcher still gives each its own result.

A product that creates pending transactions names itself as their `owner`
(`CreateTransaction(..., owner="topup")`, stored as `metadata["kassa_product"]`, `PRODUCT_KEY`)
and passes the same owner when it posts or voids them (`PostTransaction(..., owner="topup")`).
Anyone else, the HTTP ledger API included, gets 409 `transaction_managed_by_product` and changes
nothing; the sweeper still expires them at their timeout (the product's ExpiryWriter follows).
A product whose ids can be known in advance reserves their namespace where it is built
(`ledger.reserve_ids("withdrawal", "withdrawal-return:")`), so nobody else creates them first.
"""

from kassa.ledger.adapters.engine import Job, JobResult, Receipt
from kassa.ledger.batcher import Batcher
from kassa.ledger.domain.model import (
    PRODUCT_KEY,
    Account,
    Balance,
    Command,
    CreateTransaction,
    CreateTransfer,
    Entry,
    ExpirePending,
    ExpireTransaction,
    NewPosting,
    NormalBalance,
    PostPending,
    PostTransaction,
    Transaction,
    TransactionPosting,
    Transfer,
    TransferStatus,
    VoidPending,
    VoidTransaction,
)
from kassa.ledger.domain.posting import Applied, Outcome, TransactionApplied, transaction_data, transfer_data
from kassa.ledger.errors import (
    AccountExists,
    AccountNotFound,
    AccountsMustBeDifferent,
    AmountExceedsPending,
    BalanceOverflow,
    BatchFailed,
    CurrencyMismatch,
    InsufficientFunds,
    PostingAmountsMismatch,
    TransactionExists,
    TransactionManagedByProduct,
    TransactionNotFound,
    TransactionNotPending,
    TransferExists,
    TransferNotFound,
    TransferNotPending,
)
from kassa.ledger.products import ExpiryWriter, ProductWrite, ProductWriter
from kassa.ledger.service import LedgerService, account_data, domain_receipt, validate
from kassa.store.idempotency import IdemClaim, Replay

__all__ = [
    "PRODUCT_KEY",
    "Account",
    "AccountExists",
    "AccountNotFound",
    "AccountsMustBeDifferent",
    "AmountExceedsPending",
    "Applied",
    "Balance",
    "BalanceOverflow",
    "BatchFailed",
    "Batcher",
    "Command",
    "CreateTransaction",
    "CreateTransfer",
    "CurrencyMismatch",
    "Entry",
    "ExpirePending",
    "ExpireTransaction",
    "ExpiryWriter",
    "IdemClaim",
    "InsufficientFunds",
    "Job",
    "JobResult",
    "LedgerService",
    "NewPosting",
    "NormalBalance",
    "Outcome",
    "PostPending",
    "PostTransaction",
    "PostingAmountsMismatch",
    "ProductWrite",
    "ProductWriter",
    "Receipt",
    "Replay",
    "Transaction",
    "TransactionApplied",
    "TransactionExists",
    "TransactionManagedByProduct",
    "TransactionNotFound",
    "TransactionNotPending",
    "TransactionPosting",
    "Transfer",
    "TransferExists",
    "TransferNotFound",
    "TransferNotPending",
    "TransferStatus",
    "VoidPending",
    "VoidTransaction",
    "account_data",
    "domain_receipt",
    "transaction_data",
    "transfer_data",
    "validate",
]
