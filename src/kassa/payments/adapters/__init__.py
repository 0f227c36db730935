"""Database adapters of the payments context."""
