"""The embedded PostgreSQL refuses every role without its generated password (Unix socket
included), accepts it with, and keeps the passwords in a file only its owner can read."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import TYPE_CHECKING

import asyncpg
import pytest

from kassa.store import roles

if TYPE_CHECKING:
    from kassa.store.embedded import EmbeddedPostgres

pytestmark = pytest.mark.integration

_REFUSED = (asyncpg.InvalidPasswordError, asyncpg.InvalidAuthorizationSpecificationError)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("role", [roles.SUPERUSER, *roles.ROLES])
async def test_postgres_refuses_every_role_without_its_password_over_tcp_and_the_socket(
    pg_server: EmbeddedPostgres, role: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PGPASSWORD", raising=False)
    monkeypatch.setenv("PGPASSFILE", "/nonexistent")
    for host in ("127.0.0.1", str(pg_server.root / "sock")):
        for password in (None, "wrong-password-0123456789"):
            with pytest.raises(_REFUSED):
                await asyncpg.connect(user=role, password=password, port=pg_server.port, database="kassa", host=host)
        # With the generated password the same place lets it in.
        conn = await asyncpg.connect(
            user=role, password=pg_server.passwords()[role], port=pg_server.port, database="kassa", host=host
        )
        try:
            assert await conn.fetchval("SELECT current_user") == role
        finally:
            await conn.close()


async def test_postgres_trusts_no_one_and_its_passwords_are_readable_by_their_owner_only(
    pg_server: EmbeddedPostgres,
) -> None:
    conn = await asyncpg.connect(pg_server.url)
    try:
        # The rules the server actually loaded, not just the file's text.
        loaded = await conn.fetch("SELECT type, auth_method, error FROM pg_hba_file_rules")
    finally:
        await conn.close()
    assert {r["type"] for r in loaded} == {"local", "host"}
    assert all(r["auth_method"] == "scram-sha-256" and r["error"] is None for r in loaded), loaded
    assert "trust" not in (pg_server.data / "pg_hba.conf").read_text()
    assert _mode(pg_server.credentials_file) == 0o600
    stored = pg_server.credentials_file.read_text()
    assert all(pg_server.passwords()[r] in stored for r in (roles.SUPERUSER, *roles.ROLES))


async def test_a_data_directory_of_a_kassa_that_trusted_everyone_is_adopted_with_passwords(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An older kassa's cluster (initdb --auth=trust, tables owned by the superuser, no
    credentials file) starts with SCRAM, a generated password and its tables handed over."""
    import os
    import shutil
    import subprocess
    import tempfile

    from kassa.store import embedded

    # Not tmp_path: its parents are private to us, and the server runs as another user as root.
    top = Path(tempfile.mkdtemp(prefix="kassa-test-adopt-"))
    root = top / "old"
    if os.geteuid() == 0:
        os.chmod(top, 0o755)  # noqa: S103 - the embedded PostgreSQL runs as an unprivileged user
    old = embedded.EmbeddedPostgres(root, fsync=False)
    root.mkdir()
    embedded._chown_tree(root)
    initdb = [str(embedded.bin_dir() / "initdb"), "-D", str(old.data), "-U", "postgres", "--auth=trust"]
    subprocess.run(initdb, check=True, capture_output=True, preexec_fn=embedded._demote(), cwd="/")
    old.port = embedded.free_port()
    old._pg_ctl_start()
    for database, sql in (("postgres", "CREATE DATABASE kassa"), ("kassa", "CREATE TABLE legacy (tenant_id text)")):
        old._run([*old._psql(database), "-c", sql])
    assert not old.credentials_file.exists()
    monkeypatch.delenv("PGPASSWORD", raising=False)
    monkeypatch.setenv("PGPASSFILE", "/nonexistent")
    adopted = embedded.EmbeddedPostgres(root, fsync=False)
    try:
        adopted.start()  # the old server is still running, as a killed `kassa up` leaves it
        assert _mode(adopted.credentials_file) == 0o600
        with pytest.raises(_REFUSED):
            await asyncpg.connect(user="postgres", host="127.0.0.1", port=adopted.port, database="kassa")
        conn = await asyncpg.connect(adopted.role_url(roles.OWNER))
        try:
            assert await conn.fetchval("SELECT tableowner FROM pg_tables WHERE tablename = 'legacy'") == roles.OWNER
        finally:
            await conn.close()
    finally:
        adopted.destroy()
        shutil.rmtree(top, ignore_errors=True)
