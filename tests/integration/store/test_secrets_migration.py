"""Upgrading a database that holds secrets in plaintext: migration 0010 strips them from stored
Idempotency-Key responses, and `kassa migrate` seals webhook secrets with the master key (and
says so, failing, when it has no key)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import asyncpg
import pytest

from kassa.notifications.adapters.secret_store import StoredSecret, open_secret
from kassa.notifications.domain.signing import new_secret
from kassa.store.master_key import ensure_master_key, load_keyring
from support.db import database_migrated_before

if TYPE_CHECKING:
    from kassa.store.embedded import EmbeddedPostgres

pytestmark = pytest.mark.integration
KASSA = Path(sys.executable).parent / "kassa"


def kassa_migrate(url: str, key_file: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KASSA_")}
    env.update({"KASSA_DATABASE_URL": url, "KASSA_MASTER_KEY_FILE": str(key_file)})
    return subprocess.run([str(KASSA), "migrate"], env=env, capture_output=True, text=True, timeout=120, check=False)


async def test_an_upgrade_strips_stored_secrets_and_seals_plaintext_webhook_secrets(
    pg_server: EmbeddedPostgres, tmp_path: Path
) -> None:
    url = await database_migrated_before(pg_server, tmp_path, 10)

    webhook_secret, api_secret = new_secret(), "kassa_key_0123_" + uuid.uuid4().hex
    tenant_body = {"id": "t1", "name": "n", "api_key": {"id": "key_1", "secret": api_secret}, "created_at": "x"}
    endpoint_body = {"id": "e1", "url": "https://example.com/h", "secret": webhook_secret, "event_types": ["*"]}
    transfer_body = {"id": "tr1", "metadata": {"secret": "not-a-credential"}}
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("INSERT INTO tenants (id, name) VALUES ('t1', 'n')")
        await conn.execute(
            """INSERT INTO webhook_endpoints (tenant_id, id, url, event_types, secret, created_at, updated_at)
               VALUES ('t1', 'e1', 'https://example.com/h', '{*}', $1, now(), now())""",
            webhook_secret,
        )
        for key, body in (("k-tenant", tenant_body), ("k-endpoint", endpoint_body), ("k-transfer", transfer_body)):
            await conn.execute(
                "INSERT INTO idempotency_keys (tenant_id, key, request_hash, response_status, response_body)"
                " VALUES ('t1', $1, '\\x00', 201, $2)",
                key,
                json.dumps(body).encode(),
            )
    finally:
        await conn.close()

    key_file = tmp_path / "master_key"
    refused = kassa_migrate(url, key_file)  # no key file yet: nothing can be sealed
    assert refused.returncode == 1, refused
    assert "secrets not sealed" in refused.stderr and str(key_file) in refused.stderr
    ensure_master_key(key_file)
    done = kassa_migrate(url, key_file)
    assert done.returncode == 0, done
    assert "sealed the signing secrets of 1 webhook endpoints" in done.stdout

    conn = await asyncpg.connect(url)
    try:
        stored = {
            r["key"]: json.loads(bytes(r["response_body"])) for r in await conn.fetch("SELECT * FROM idempotency_keys")
        }
        row = await conn.fetchrow("SELECT secret, secret_sealed, t::text AS everything FROM webhook_endpoints t")
    finally:
        await conn.close()
    assert row is not None
    assert stored["k-tenant"]["api_key"]["secret"] is None and stored["k-tenant"]["api_key"]["secret_note"]
    assert stored["k-tenant"]["api_key"]["id"] == "key_1"
    assert stored["k-endpoint"]["secret"] is None and stored["k-endpoint"]["secret_note"]
    assert stored["k-endpoint"]["url"] == "https://example.com/h"
    assert stored["k-transfer"] == transfer_body  # a transfer's metadata is not a credential
    assert row["secret"] is None and webhook_secret not in row["everything"]
    keys = load_keyring(key_file)
    assert open_secret(keys, "t1", "e1", StoredSecret(sealed=row["secret_sealed"])) == webhook_secret
    assert (key_file.stat().st_mode & 0o777) == 0o600
