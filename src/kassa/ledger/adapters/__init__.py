"""PostgreSQL adapters of the ledger."""
