"""The one place where things are wired together: pool, batcher, services, event consumers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from kassa.compliance import ComplianceService
from kassa.compliance.adapters.sandbox_kyc import CALLBACK_PATH, SandboxKycProvider
from kassa.compliance.adapters.vault import TenantVault
from kassa.identity import record_audit
from kassa.identity.customers import CustomerService
from kassa.identity.ratelimit import build_limiter
from kassa.identity.service import IdentityService
from kassa.ledger.batcher import Batcher
from kassa.ledger.service import LedgerService
from kassa.notifications import count_plaintext_secrets, seal_plaintext_secrets
from kassa.observability import metrics, process
from kassa.payments import PaymentsService
from kassa.payments.entitlement_cache import Cache, EntitlementCache
from kassa.payments.entitlement_redis import RedisEntitlementCache
from kassa.payments.held_purchases import PurchaseCompliance
from kassa.payments.movement_reviews import MovementCompliance
from kassa.payments.ppv import PayPerView
from kassa.store.master_key import load_keyring
from kassa.store.pool import Pool, create_pool

if TYPE_CHECKING:
    from kassa.events.registry import EventWiring
    from kassa.payments import WalletService
    from kassa.settings import Settings
    from kassa.shared.crypto import KeyRing


@dataclass
class Services:
    settings: Settings
    pool: Pool
    ledger: LedgerService
    identity: IdentityService
    keys: KeyRing  # the master key ring: seals secrets at rest (webhook signing secrets)
    customers: CustomerService  # identity: customers, their personal data sealed per tenant
    payments: PaymentsService  # wallets, top-ups, withdrawals, provider callbacks
    ppv: PayPerView  # pay-per-view catalogue, purchases, entitlements, refunds
    compliance: ComplianceService
    # (scope, Idempotency-Key) of requests running in this process: a concurrent duplicate is a 409.
    inflight_keys: set[tuple[str, str]] = field(default_factory=set)

    @property
    def wallets(self) -> WalletService:
        return self.payments.wallets

    async def close(self) -> None:
        await self.ppv.cache.close()
        await self.payments.close()
        await self.ledger.stop_expiry_sweeper()
        await self.ledger.batcher.stop()
        await self.identity.close()
        await self.pool.close()


def kyc_provider(settings: Settings) -> SandboxKycProvider | None:
    """The sandbox KYC provider when its callback secret is configured, else none (KYC is 503)."""
    if settings.kyc_sandbox_secret is None:
        return None
    url = settings.kyc_callback_url or f"http://{settings.http_host}:{settings.http_port}{CALLBACK_PATH}"
    return SandboxKycProvider(url, settings.kyc_sandbox_secret.encode())


async def build_services(settings: Settings, *, sweeper: bool = True) -> Services:
    if settings.database_url is None:
        raise RuntimeError("KASSA_DATABASE_URL is not set (kassa up sets it for the embedded database)")
    keys = load_keyring(settings.master_key_path)  # before anything starts: a missing key fails fast
    # The API never changes session state, so connections go back to the pool without a reset.
    pool = await create_pool(settings.database_url, reset_session=False)
    batcher = Batcher(pool, observe=metrics.observe_batch)
    process.watch_pool(pool)
    batcher.start()
    ledger = LedgerService(pool, batcher)
    if sweeper:
        ledger.start_expiry_sweeper()
    identity = IdentityService(
        pool, build_limiter(settings.redis_url), (settings.rate_limit_per_s, settings.rate_limit_burst)
    )
    # Revocations from any process reach this one's key cache by LISTEN/NOTIFY (identity.authn).
    identity.start(settings.database_url)
    # Shared through Redis when configured; else in process, following other processes' writes.
    cache: Cache = RedisEntitlementCache(settings.redis_url) if settings.redis_url else EntitlementCache()
    await cache.listen(settings.database_url)
    customers = CustomerService(pool, keys)
    payments = PaymentsService.build(settings, pool, ledger)
    ppv = PayPerView(pool, ledger, customers, payments.accounts, cache)
    vault = TenantVault(customers.keys)
    compliance = ComplianceService(
        pool,
        ledger,
        audit=record_audit,  # rule changes, review decisions, KYC overrides: the admin audit log
        vault=vault,
        kyc_provider=kyc_provider(settings),
        customers=customers,
    )
    # Top-ups, withdrawals and purchases move money through the compliance guard (capabilities,
    # limits, rules, reviews), and a review decision completes or fails the product it holds.
    MovementCompliance(payments.movements, compliance, vault)
    PurchaseCompliance(ppv, compliance)
    return Services(
        settings=settings,
        pool=pool,
        ledger=ledger,
        identity=identity,
        keys=keys,
        customers=customers,
        payments=payments,
        ppv=ppv,
        compliance=compliance,
    )


async def seal_secrets_at_rest(database_url: str, settings: Settings) -> int:
    """Seal the webhook secrets that rows from before migration 0010 hold in plaintext; returns
    how many endpoints were sealed. `kassa up` and `kassa migrate` run it right after migrating,
    with the migration role (it must see every tenant's rows). The master key is needed only
    when there is something to seal. Raises MasterKeyError."""
    pool = await create_pool(database_url, size_max=2)
    try:
        if not await count_plaintext_secrets(pool):
            return 0
        return await seal_plaintext_secrets(pool, load_keyring(settings.master_key_path))
    finally:
        await pool.close()


def event_wiring() -> EventWiring:
    """The consumers and background loops the event roles run (`kassa worker`, `kassa events`).

    Imported here, when a worker or tool starts, so that the events context never names the
    contexts that react to events.
    """
    from kassa.events.registry import EventWiring
    from kassa.notifications.consumers import handlers
    from kassa.notifications.delivery import run_delivery_worker

    return EventWiring(handlers=handlers(), loops=[("webhook delivery", run_delivery_worker)])
