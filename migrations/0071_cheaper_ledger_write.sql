-- 0071: the id and currency CHECKs of accounts, transfers and transactions in a cheap form of the
-- same rules (same names, same strings accepted).
-- Why (docs/ledger-cost.md, "The write's cost per statement"): PostgreSQL evaluates every CHECK
-- of a row on every UPDATE, so `accounts.id ~ '^[A-Za-z0-9_.:-]{1,64}$'` and `currency ~
-- '^[A-Z]{3}$'` ran on each balance update (four expressions per transfer, twenty per
-- five-posting transaction), and the same id rule on each insert of a transfer or transaction.
-- The bounded repetition `{1,64}` is the costly form of that rule: it compiles to 64 copies of
-- the character class, and the regex engine builds its DFA states anew on every call (`miss` and
-- `shortest` in a profile of the backend): about 6 us for a 36-character UUID, 2.6 us for
-- `acc-123`, the largest single CHECK on the transfer path. `length(id) BETWEEN 1 AND 64 AND id ~
-- '^[A-Za-z0-9_.:-]+$'` accepts exactly the same strings (every character one ASCII byte of the
-- class, 1 to 64 of them) with a one-state loop: 0.35 us for the UUID. The currency rule gets the
-- same form. Re-adding each CHECK scans its table once (rows that passed the old rule pass the
-- new one); the balance update's plan, the other finding, is fixed in the statement itself
-- (kassa/ledger/adapters/statements.py).

ALTER TABLE accounts
    DROP CONSTRAINT accounts_id_check,
    DROP CONSTRAINT accounts_currency_check,
    ADD CONSTRAINT accounts_id_check CHECK (length(id) BETWEEN 1 AND 64 AND id ~ '^[A-Za-z0-9_.:-]+$'),
    ADD CONSTRAINT accounts_currency_check CHECK (length(currency) = 3 AND currency ~ '^[A-Z]+$');
ALTER TABLE transfers
    DROP CONSTRAINT transfers_id_check,
    ADD CONSTRAINT transfers_id_check CHECK (length(id) BETWEEN 1 AND 64 AND id ~ '^[A-Za-z0-9_.:-]+$');
ALTER TABLE transactions
    DROP CONSTRAINT transactions_id_check,
    ADD CONSTRAINT transactions_id_check CHECK (length(id) BETWEEN 1 AND 64 AND id ~ '^[A-Za-z0-9_.:-]+$');
