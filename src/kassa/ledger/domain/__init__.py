"""Pure ledger domain: no framework, no I/O (a unit test enforces the imports)."""
