-- 0041 admin audit log: every privileged action, append-only.
-- Why (issue 11): regulated tenants must show who did what and when: keys created, rotated or
-- revoked, rules changed, reviews decided, KYC overridden, manual ledger adjustments. Rows are
-- written by `kassa.identity.record_audit` inside the transaction of the action itself (so an
-- action exists exactly when its record does). Like the journal, the database refuses UPDATE,
-- DELETE and TRUNCATE, whoever asks. `before`/`after` never hold secrets (the writer redacts
-- them). `seq` orders a tenant's records for cursor pages (and for the hash chain that the
-- settlement issue adds).
CREATE TABLE audit_log (
    tenant_id     text NOT NULL REFERENCES tenants (id),
    seq           bigint GENERATED ALWAYS AS IDENTITY,
    id            text NOT NULL UNIQUE,
    occurred_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    actor_key_id  text CHECK (length(actor_key_id) <= 64),
    request_id    text CHECK (length(request_id) <= 128),
    action        text NOT NULL CHECK (action ~ '^[a-z_]+(\.[a-z_]+)+$' AND length(action) <= 64),
    target_type   text NOT NULL CHECK (length(target_type) BETWEEN 1 AND 64),
    target_id     text NOT NULL CHECK (length(target_id) BETWEEN 1 AND 128),
    before        jsonb,
    after         jsonb,
    PRIMARY KEY (tenant_id, seq)
);

CREATE FUNCTION kassa_refuse_audit_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit log records are immutable (% refused)', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER audit_log_immutable BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION kassa_refuse_audit_change();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION kassa_refuse_audit_change();
