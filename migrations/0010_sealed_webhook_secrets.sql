-- 0010 secrets at rest: webhook signing secrets sealed, stored responses without secrets.
-- Why: webhook secrets were stored in plaintext (anyone reading the table or a backup could
-- sign forged webhooks), and Idempotency-Key records kept the first response of tenant and
-- endpoint creation for 48 hours, secret included, so a replay handed out a secret that may
-- have been rotated or revoked since.
--
-- Signing needs the secret itself (HMAC), so it cannot be hashed: it is sealed with AES-256-GCM
-- under the master key (kassa.shared.crypto; format version byte, key id, nonce, ciphertext,
-- tag). SQL cannot do that (it has no key, and pgcrypto has no GCM), so existing plaintext
-- secrets move to the sealed columns in application code: `kassa up` and `kassa migrate` seal
-- them right after migrating (kassa.notifications.seal_plaintext_secrets), and until then the
-- delivery worker still reads the plaintext of a row not yet sealed. New rows never hold
-- plaintext: the application writes only the sealed columns.

ALTER TABLE webhook_endpoints
    ALTER COLUMN secret DROP NOT NULL,
    ADD COLUMN secret_sealed bytea CHECK (get_byte(secret_sealed, 0) = 1 AND octet_length(secret_sealed) >= 37),
    ADD COLUMN previous_secret_sealed bytea
        CHECK (get_byte(previous_secret_sealed, 0) = 1 AND octet_length(previous_secret_sealed) >= 37),
    DROP CONSTRAINT webhook_endpoints_previous_secret_expires,
    -- Exactly one form of the current secret, at most one of the previous one, and a previous
    -- secret exactly while it has an expiry.
    ADD CONSTRAINT webhook_endpoints_one_secret CHECK ((secret IS NULL) <> (secret_sealed IS NULL)),
    ADD CONSTRAINT webhook_endpoints_one_previous_secret CHECK (previous_secret IS NULL OR previous_secret_sealed IS NULL),
    ADD CONSTRAINT webhook_endpoints_previous_secret_expires
        CHECK ((previous_secret IS NULL AND previous_secret_sealed IS NULL) = (previous_secret_expires_at IS NULL));

-- Stored first responses of POST /v1/tenants (api_key.secret) and of webhook endpoint creation
-- (secret): the secret becomes null with a note, which is what a replay returns from now on.
WITH stored AS (
    SELECT tenant_id, key, convert_from(response_body, 'UTF8')::jsonb AS body
    FROM idempotency_keys
    WHERE response_status BETWEEN 200 AND 299
      AND response_body IS NOT NULL
      AND position('"secret"' IN convert_from(response_body, 'UTF8')) > 0
)
UPDATE idempotency_keys i
SET response_body = convert_to(
        (CASE
            WHEN jsonb_typeof(s.body -> 'api_key' -> 'secret') = 'string' THEN jsonb_set(
                s.body, '{api_key}', (s.body -> 'api_key') || jsonb_build_object(
                    'secret', NULL,
                    'secret_note', 'The secret is shown only once, in the first response to this request; a replay does not repeat it.'))
            ELSE s.body || jsonb_build_object(
                'secret', NULL,
                'secret_note', 'The secret is shown only once, in the first response to this request; a replay does not repeat it.')
        END)::text,
        'UTF8')
FROM stored s
WHERE i.tenant_id = s.tenant_id AND i.key = s.key
  AND jsonb_typeof(s.body) = 'object'
  AND (jsonb_typeof(s.body -> 'api_key' -> 'secret') = 'string'
       OR (jsonb_typeof(s.body -> 'secret') = 'string' AND s.body ->> 'secret' LIKE 'whsec\_%'));
