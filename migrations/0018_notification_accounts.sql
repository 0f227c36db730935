-- 0018 notification accounts: the notification log is written only for accounts that asked for
-- it (metadata "notify": true when the account was created), not for every account an event
-- touches. Why: a fee or pool account credited by every purchase of a live event would get a
-- row per transfer that nobody reads; customer-facing accounts opt in.
-- Fed only by AccountCreated events (this context never reads the ledger's tables).
CREATE TABLE notification_accounts (
    tenant_id   text NOT NULL,
    account_id  text NOT NULL,
    event_id    text NOT NULL,
    created_at  timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, account_id)
);
