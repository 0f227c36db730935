-- 0057 per-tenant limits as data: a tenant's overrides of the default tier limits, versioned.
-- Why: the limits by KYC tier were fixed in code (compliance/domain/limits.py DEFAULT_LIMITS);
-- a regulated tenant sets its own (its licence, its risk appetite). Each change stores the whole
-- set of overrides as a new version with who and why (and an audit-log record), as monitoring
-- rules are (compliance_rule_sets); old versions are kept. A limit not overridden keeps its
-- default. The payment's checks read the latest version with the customer's standing.
CREATE TABLE compliance_limit_sets (
    tenant_id   text NOT NULL,
    version     integer NOT NULL CHECK (version > 0),
    -- [{tier, direction, window, metric, max}]: overrides of DEFAULT_LIMITS
    limits      jsonb NOT NULL,
    changed_by  text NOT NULL,
    reason      text NOT NULL CHECK (length(reason) BETWEEN 1 AND 500),
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, version)
);
