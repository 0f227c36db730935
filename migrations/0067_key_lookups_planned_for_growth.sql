-- 0067 key lookups into the purchase path's growing tables planned as index lookups on a fresh
-- database, not as scans of a table that was tiny when the plan was made.
-- Why: every row a purchase inserts runs PostgreSQL's foreign-key check into `transactions`
-- (postings, the purchase row) or `purchases` (the entitlement) through a plan each connection
-- caches until the table is analysed again. Two states of a young table give that plan the
-- wrong shape, and it then stays wrong while the table grows during a live event
-- (docs/database.md, "Foreign-key checks planned on a tiny table"):
-- 1. analysed while tiny (autovacuum's first analyse comes after 50 changed rows): a sequential
--    scan is cheapest on one page and stays cached until the next analyse, up to a whole
--    `autovacuum_naptime` later, by then thousands of rows on. Fixed here by analysing these
--    tables first at 1,000 changed rows: measured, a (tenant_id, id) lookup is planned on the
--    primary key from 200 rows on (7 pages) once the table has statistics.
-- 2. never analysed (a fresh database): no statistics on `tenant_id`, so `tenant_id = $1` looks
--    as selective as any other condition, and the planner may take a narrower index that has
--    `tenant_id` alone as its key prefix (it picks `purchases_by_content` for the entitlement's
--    check: a walk over every purchase of the tenant). Fixed here by giving `tenant_id` the
--    statistics every real analyse finds (not selective: few tenants, each with many rows),
--    only where the column has none yet; the first analyse with rows replaces them with
--    measured ones. PostgreSQL 18's pg_restore_attribute_stats; skipped on older servers, which
--    keep case 2 until their first analyse (1,000 rows).
-- A manual ANALYZE of these tables while they are nearly empty still plans a scan until the next
-- analyse; docs/database.md says so.
ALTER TABLE transactions SET (autovacuum_analyze_threshold = 1000);
ALTER TABLE purchases SET (autovacuum_analyze_threshold = 1000);
ALTER TABLE entitlements SET (autovacuum_analyze_threshold = 1000);

DO $$
DECLARE
    t text;
BEGIN
    IF current_setting('server_version_num')::integer < 180000 THEN
        RETURN;
    END IF;
    FOREACH t IN ARRAY ARRAY['transactions', 'purchases', 'entitlements'] LOOP
        IF NOT EXISTS (
            SELECT 1 FROM pg_stats WHERE schemaname = 'public' AND tablename = t AND attname = 'tenant_id'
        ) THEN
            PERFORM pg_restore_attribute_stats(
                'schemaname', 'public', 'relname', t, 'attname', 'tenant_id', 'inherited', false,
                'null_frac', 0::real, 'avg_width', 8, 'n_distinct', 1::real, 'correlation', 1::real
            );
        END IF;
    END LOOP;
END
$$;
