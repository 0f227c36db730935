"""Plans on indexes for statements that find their rows by key, whatever the statistics say.

A connection caches the plans of the statements it runs, and PostgreSQL makes them from the
statistics of the moment. For a table analysed while it was nearly empty (a young platform, a
purge that emptied it, a restore followed by ANALYZE), a sequential scan is the cheaper plan on
paper for a probe by key, and the cached plan keeps reading the whole table on every run as the
table grows, until autovacuum's next ANALYZE of it invalidates the plan: up to a minute or more,
exactly when a live event's traffic reaches a young platform (docs/ledger-cost.md, "Plans made on
nearly empty tables"). With sequential scans off, such statements are planned on their indexes;
a statement with no index to use still gets its scan (the setting makes it the last resort).
"""

from __future__ import annotations

# For one transaction (a ledger batch): ends with it.
KEY_PROBES_ONLY_LOCAL = "SET LOCAL enable_seqscan = off"
# For a connection held by one role for its lifetime (the relay's lease, a consumer runner's
# kept connection); the pool's reset on release (RESET ALL) ends it.
KEY_PROBES_ONLY_SESSION = "SET enable_seqscan = off"

__all__ = ["KEY_PROBES_ONLY_LOCAL", "KEY_PROBES_ONLY_SESSION"]
