"""PostgreSQL: embedded server, connection pool and migrations."""
