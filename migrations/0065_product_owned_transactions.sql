-- 0065 product-owned pending transactions name their owner (metadata key `kassa_product`).
-- Why (issue 8, a money defect): `POST /v1/transactions/{id}/post|void` could settle a pending
-- transaction that a product owns: post a top-up the provider never paid (the wallet credited
-- from nothing), release a withdrawal's hold while its payout is in flight, or settle a payment
-- held for a compliance review. The ledger now stores the owner of every transaction a product
-- creates as `metadata.kassa_product` and lets only that owner post or void it (409
-- `transaction_managed_by_product` for anyone else; kassa.ledger.domain.transactions). This marks
-- the product transactions that are still pending now, so the generic API cannot settle those
-- either. Only pending ones: a settled transaction can no longer be posted or voided, and
-- rewriting every past purchase's row would be a long update of a large table for nothing.
-- The owners are the products' names in code: kassa.payments.domain.movements.owner_of,
-- kassa.payments.ppv_orders.PURCHASE_OWNER, kassa.compliance.payments.REVIEW_OWNER.
UPDATE transactions t
SET metadata = t.metadata || jsonb_build_object('kassa_product', o.owner)
FROM (
    SELECT tenant_id, transaction_id, 'topup' AS owner FROM topups
    UNION ALL
    SELECT tenant_id, transaction_id, 'withdrawal' FROM withdrawals
    UNION ALL
    SELECT tenant_id, transaction_id, 'purchase' FROM held_purchases
    UNION ALL
    SELECT tenant_id, transaction_id, 'compliance' FROM compliance_reviews WHERE product IS NULL
) AS o
WHERE t.tenant_id = o.tenant_id
  AND t.id = o.transaction_id
  AND t.status = 'pending'
  AND NOT t.metadata ? 'kassa_product';
