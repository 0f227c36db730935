"""`kassa dr drill`: lose a zone under load, fail over, and measure what it cost.

Two embedded PostgreSQL servers play two availability zones: the primary (zone a) archives its
WAL to a backup directory (the "S3" that outlives both zones) and streams it to a standby
(zone b), synchronously or not. A `kassa api` process serves a transfer load from clients that
retry unacknowledged requests with the same Idempotency-Key. Mid-load the drill takes a base
backup, marks a quiet instant T for the point-in-time restore, SIGKILLs every process of the
primary and deletes its data directory, promotes the standby, and starts the API against it
(a rollout with the new database URL). Then it measures:

- RTO: from the kill to the first transfer acknowledged by the repointed platform;
- RPO: acknowledged transfers missing on the new primary, and the time span they cover;
- the ledger invariants on the new primary (kassa.dr.audit);
- PITR: the base backup plus archived WAL restored to T on a third server holds exactly the
  transfers acknowledged before T, with balances equal to what those transfers imply.

Failure detection is not part of the RTO here (the drill promotes right after the kill);
docs/dr.md adds the detection time of the production setup.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kassa.dr import audit
from kassa.dr.load import TransferLoad
from kassa.dr.platform import ApiProcess, create_tenant, open_accounts, start_api, start_workers
from kassa.dr.report import failover_section, pitr_section, verdict
from kassa.events.bus.embedded_nats import EmbeddedNats
from kassa.store import backup, replication, roles
from kassa.store.embedded import EmbeddedPostgres
from kassa.store.master_key import ensure_master_key
from kassa.store.migrate import migrate
from kassa.store.pool import create_pool

if TYPE_CHECKING:
    from kassa.store.backup import Restored
    from kassa.store.pool import Pool

STANDBY = "kassa_standby"
RECOVERY_WAIT_S = 120.0  # the platform must answer again within this, or the drill fails
EVENTS_DRAIN_WAIT_S = 60.0  # the relay publishes the backlog left by the failover within this


@dataclass(frozen=True, slots=True)
class DrillConfig:
    mode: str = "sync"  # "sync": synchronous_standby_names names the standby; "async": it does not
    sync_commit: str = "on"  # or "remote_apply"
    clients: int = 16
    wallets: int = 20
    warmup_s: float = 3.0
    before_target_s: float = 3.0
    before_kill_s: float = 3.0
    after_recovery_s: float = 3.0
    fsync: bool = True
    workers: bool = True  # run `kassa worker all` and an embedded NATS too, and check the events drain
    workdir: Path | None = None
    keep: bool = False

    def short(self) -> DrillConfig:
        """The bounded form `make test` runs."""
        return replace(
            self, clients=8, wallets=8, warmup_s=1.0, before_target_s=1.0, before_kill_s=1.0, after_recovery_s=1.0
        )


class Drill:
    def __init__(self, config: DrillConfig) -> None:
        self.config = config
        self.work = Path(config.workdir or tempfile.mkdtemp(prefix="kassa-dr-"))
        self.servers: list[EmbeddedPostgres] = []
        self.processes: list[ApiProcess] = []
        self.nats: EmbeddedNats | None = None
        self.marks: dict[str, float] = {}

    def _mark(self, name: str) -> None:
        self.marks[name] = time.monotonic()

    async def run(self) -> dict[str, Any]:
        self.work.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            os.chmod(self.work, 0o755)  # noqa: S103 - the embedded servers run as an unprivileged user
        try:
            return await self._run()
        finally:
            for process in self.processes:
                process.kill()
            if self.nats is not None:
                self.nats.stop()
            for server in self.servers:
                server.stop("immediate")
            if not self.config.keep:
                shutil.rmtree(self.work, ignore_errors=True)

    async def _zones(self) -> tuple[EmbeddedPostgres, EmbeddedPostgres, Path, str]:
        c = self.config
        archive = backup.prepare_backup_dir(self.work / "backups")
        primary = EmbeddedPostgres(self.work / "zone-a", fsync=c.fsync, options=backup.archive_options(archive))
        self.servers.append(primary)
        await asyncio.to_thread(primary.start)
        # Kept apart from the zones, as a secrets manager would: the PITR copy needs the
        # database credentials, every API and worker process the master key.
        (self.work / "secrets").mkdir(exist_ok=True)
        backup.copy_credentials(primary.root, self.work / "secrets")
        ensure_master_key(self.work / "secrets" / "master_key")
        await migrate(primary.role_url(roles.OWNER))  # as `kassa migrate` runs: the schema owner
        password = await asyncio.to_thread(replication.grant_replication, primary)
        standby = await asyncio.to_thread(replication.create_standby, primary, self.work / "zone-b", STANDBY, password)
        self.servers.append(standby)
        if c.mode == "sync":
            await asyncio.to_thread(replication.make_synchronous, primary, STANDBY, c.sync_commit)
        await asyncio.to_thread(replication.wait_streaming, primary, STANDBY, c.mode == "sync")
        return primary, standby, archive, replication.replication_url(primary, password)

    async def _platform(self, server: EmbeddedPostgres, zone: str) -> str:
        """Stop the platform's processes, start them against `server`, each as the role it has
        in production (the API as the application role, the workers as the worker role); the
        API's URL."""
        for process in self.processes:
            process.kill()
        self.processes.clear()
        nats_url = self.nats.url if self.nats else None
        key = self.work / "secrets" / "master_key"
        api = await start_api(server.role_url(roles.APP), self.work / f"api-{zone}", key, nats_url)
        self.processes.append(api)
        if nats_url:
            workers = start_workers(server.role_url(roles.WORKER), nats_url, key, self.work / f"workers-{zone}")
            self.processes.append(workers)
        return api.base

    async def _run(self) -> dict[str, Any]:
        c = self.config
        started_at = datetime.now(UTC)
        primary, standby, archive, backup_url = await self._zones()
        if c.workers:
            self.nats = EmbeddedNats(self.work / "nats")  # the broker is not in a lost zone
            await asyncio.to_thread(self.nats.start)
        tenant_id, api_key = await create_tenant(primary.url)
        endpoint = {"url": await self._platform(primary, "zone-a")}
        wallets, funding = await open_accounts(endpoint["url"], api_key, c.wallets)

        load = TransferLoad(lambda: endpoint["url"], api_key, wallets, c.clients)
        load.start()
        await asyncio.sleep(c.warmup_s)
        base = await asyncio.to_thread(backup.take_base_backup, backup_url, archive)
        await asyncio.sleep(c.before_target_s)
        await load.pause()  # nothing in flight: every commit so far precedes T, every later one follows it
        target = datetime.now(UTC)
        acked_at_target = load.acked_before(target)
        load.resume()
        await asyncio.sleep(min(0.5, c.before_kill_s))
        await asyncio.to_thread(backup.archive_current_segment, primary)
        await asyncio.sleep(c.before_kill_s)

        at_kill = await asyncio.to_thread(replication.standby_state, primary, STANDBY)
        killed_at, self.marks["killed"] = await asyncio.to_thread(replication.kill_server, primary)
        self.servers.remove(primary)
        shutil.rmtree(primary.root)  # the zone is gone, with its disk
        await asyncio.to_thread(replication.promote, standby)
        self._mark("promoted")
        endpoint["url"] = await self._platform(standby, "zone-b")
        self._mark("repointed")
        first = await _first_ack(load, endpoint["url"])
        await asyncio.sleep(c.after_recovery_s)
        await load.stop()

        pool = await create_pool(standby.url, size_max=2)
        try:
            after = await audit.snapshot(pool, tenant_id)
            drained = await _events_drained(pool, tenant_id) if c.workers else None
        finally:
            await pool.close()
        report: dict[str, Any] = {
            "started_at": started_at.isoformat(),
            "config": _config_json(c),
            "machine": {"nproc": os.cpu_count(), "loadavg_at_end": list(os.getloadavg())},
            "failover": failover_section(
                load, after, killed_at, self.marks, first, at_kill, {b["id"] for b in funding}
            ),
            "events": drained,
        }
        began = time.monotonic()
        restored = await asyncio.to_thread(backup.restore, archive, target, self.work / "pitr", self.work / "secrets")
        self.servers.append(restored.server)
        restore_s = time.monotonic() - began
        report["pitr"] = await _pitr(restored, tenant_id, funding, load, acked_at_target, base.label, restore_s)
        report["verdict"] = verdict(report, c.mode)
        return report


def _config_json(c: DrillConfig) -> dict[str, Any]:
    return {name: (str(getattr(c, name)) if name == "workdir" else getattr(c, name)) for name in c.__slots__}


async def _events_drained(pool: Pool, tenant_id: str) -> dict[str, Any]:
    """Wait (bounded) until the relay on the new primary has published every outbox row of
    the tenant, those written before the failover included."""
    began = time.monotonic()
    while (left := await audit.unpublished_events(pool, tenant_id)) and time.monotonic() - began < EVENTS_DRAIN_WAIT_S:
        await asyncio.sleep(0.1)
    return {"unpublished_after_drain": left, "drain_s": round(time.monotonic() - began, 3)}


async def _first_ack(load: TransferLoad, endpoint: str) -> float:
    deadline = time.monotonic() + RECOVERY_WAIT_S
    while (first := load.first_ack_via(endpoint)) is None:
        if time.monotonic() > deadline:
            raise TimeoutError(f"no transfer acknowledged within {RECOVERY_WAIT_S} s of the failover")
        await asyncio.sleep(0.01)
    return first.at_mono


async def _pitr(
    restored: Restored,
    tenant_id: str,
    funding: list[dict[str, Any]],
    load: TransferLoad,
    expected: set[str],
    label: str,
    restore_s: float,
) -> dict[str, Any]:
    pool = await create_pool(restored.server.url, size_max=2)
    try:
        found = await audit.snapshot(pool, tenant_id)
    finally:
        await pool.close()
    funding_ids = {b["id"] for b in funding}
    model = audit.expected_balances(funding, [load.sent[i] for i in expected])
    return pitr_section(restored, label, found, funding_ids, expected, model, restore_s)


__all__ = ["Drill", "DrillConfig"]
