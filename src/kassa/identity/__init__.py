"""The identity context: tenants, API keys with scopes and rate limits, the admin audit log,
and customers (with KYC to come).

Other contexts import from here: `CustomerService.get_customer(tenant_id, customer_id) ->
Customer` raises `CustomerNotFound` (code `customer_not_found`); `record_audit(conn, ...)` records
their privileged actions in their own transaction; `Scope` / `ALL_SCOPES` name route scopes.
"""

from kassa.identity.audit import AuditRecord, list_audit, record_audit
from kassa.identity.customers import CustomerService
from kassa.identity.domain.customers import Customer, CustomerType
from kassa.identity.domain.scopes import ALL_SCOPES, TENANT_SCOPES, Scope
from kassa.identity.errors import CustomerExists, CustomerNotFound, InvalidCustomer

__all__ = [
    "ALL_SCOPES",
    "TENANT_SCOPES",
    "AuditRecord",
    "Customer",
    "CustomerExists",
    "CustomerNotFound",
    "CustomerService",
    "CustomerType",
    "InvalidCustomer",
    "Scope",
    "list_audit",
    "record_audit",
]
