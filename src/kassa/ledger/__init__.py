"""The ledger context: accounts, transfers, holds, balances and the journal."""
