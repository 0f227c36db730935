"""The identity context: tenants, API keys, and customers (with KYC to come).

Other contexts import customers from here: `CustomerService.get_customer(tenant_id,
customer_id) -> Customer` raises `CustomerNotFound` (code `customer_not_found`).
"""

from kassa.identity.customers import CustomerService
from kassa.identity.domain.customers import Customer, CustomerType
from kassa.identity.errors import CustomerExists, CustomerNotFound, InvalidCustomer

__all__ = ["Customer", "CustomerExists", "CustomerNotFound", "CustomerService", "CustomerType", "InvalidCustomer"]
