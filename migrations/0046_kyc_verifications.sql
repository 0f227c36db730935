-- 0046 KYC verifications: one row per verification a customer asks for, with the personal data
-- it was made with sealed under the tenant's data key (AES-256-GCM, envelope encryption) and a
-- keyed hash of the document number, so that a document can be found (a duplicate identity, a
-- fraud report) without decrypting every row. The hash is HMAC-SHA256 under a per-tenant key
-- derived from the tenant's data key: equal documents of one tenant hash equally, and a
-- document number cannot be tested against the table without that key.
CREATE TABLE kyc_verifications (
    tenant_id        text NOT NULL,
    id               text NOT NULL,
    customer_id      text NOT NULL,
    provider         text NOT NULL,
    requested_tier   smallint NOT NULL CHECK (requested_tier BETWEEN 1 AND 2),
    status           text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'review', 'verified', 'rejected')),
    birth_date_sealed bytea NOT NULL,
    address_sealed   bytea NOT NULL,
    document_sealed  bytea NOT NULL,
    document_hash    bytea NOT NULL CHECK (length(document_hash) = 32),
    reason           text CHECK (length(reason) <= 500),
    decided_by       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    decided_at       timestamptz,
    PRIMARY KEY (tenant_id, id),
    CONSTRAINT kyc_verifications_decided CHECK ((status IN ('verified', 'rejected')) = (decided_at IS NOT NULL))
);
CREATE INDEX kyc_verifications_by_document ON kyc_verifications (tenant_id, document_hash);
CREATE INDEX kyc_verifications_by_customer ON kyc_verifications (tenant_id, customer_id, created_at);
