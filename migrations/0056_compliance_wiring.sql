-- 0056 compliance on the payment routes: which product a review holds, and the product-side
-- state of top-ups, withdrawals and purchases held for review.
-- Why: top-ups, withdrawals and purchases now move money through the compliance guard. A review
-- decision must complete or fail the product it holds (docs/compliance.md, "Payments held for
-- review"), so the review names its product, and each product keeps what it needs until then:
-- - a top-up remembers that the provider charged the card while the review was open (the
--   wallet is credited only when both the charge and the approval happened);
-- - a withdrawal keeps its destination account number sealed under the tenant's data key until
--   the approval hands the payout to the provider (it is erased then, or on rejection);
-- - a purchase held for review has no purchase row and no entitlement yet: it waits here with
--   the row it will write on approval (the access window starts then).

ALTER TABLE compliance_reviews
    ADD COLUMN product    text CHECK (product IN ('topup', 'withdrawal', 'purchase')),
    ADD COLUMN product_id text CHECK (length(product_id) <= 64),
    ADD CONSTRAINT compliance_reviews_product_named CHECK ((product IS NULL) = (product_id IS NULL));

ALTER TABLE topups
    ADD COLUMN review_id     text,
    ADD COLUMN review_status text CHECK (review_status IN ('open', 'approved', 'rejected')),
    ADD COLUMN charged       boolean NOT NULL DEFAULT false,
    ADD CONSTRAINT topups_review_named CHECK ((review_id IS NULL) = (review_status IS NULL));

ALTER TABLE withdrawals
    ADD COLUMN review_id          text,
    ADD COLUMN review_status      text CHECK (review_status IN ('open', 'approved', 'rejected')),
    ADD COLUMN destination_sealed bytea,
    ADD CONSTRAINT withdrawals_review_named CHECK ((review_id IS NULL) = (review_status IS NULL)),
    ADD CONSTRAINT withdrawals_sealed_only_while_held CHECK (destination_sealed IS NULL OR review_status = 'open');

CREATE TABLE held_purchases (
    tenant_id       text NOT NULL,
    id              text NOT NULL,
    customer_id     text NOT NULL,
    content_id      text NOT NULL,
    transaction_id  text NOT NULL,
    review_id       text NOT NULL,
    status          text NOT NULL CHECK (status IN ('pending_review', 'completed', 'failed')),
    failure_code    text CHECK (length(failure_code) <= 64),
    -- The purchase row (price, split, legs, access) the approval writes: kassa's own encoding.
    purchase        jsonb NOT NULL,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, review_id),
    FOREIGN KEY (tenant_id, transaction_id) REFERENCES transactions (tenant_id, id)
);
