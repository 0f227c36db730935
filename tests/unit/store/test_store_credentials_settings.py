"""Credentials travel through settings and URLs, never into logs, and the roles' SQL cannot be
made to run anything but what it says (no quoting of unchecked input)."""

from __future__ import annotations

import pytest

from kassa.settings import Settings, without_password
from kassa.store import roles


def test_a_url_for_a_log_line_keeps_user_host_and_path_but_never_the_password() -> None:
    assert without_password("nats://kassa:s3cr3t@127.0.0.1:4222") == "nats://kassa:***@127.0.0.1:4222"
    assert without_password("postgresql://app:p%40ss@db:5432/kassa") == "postgresql://app:***@db:5432/kassa"
    assert without_password("nats://tok3n@host:4222") == "nats://***@host:4222"
    assert without_password("nats://127.0.0.1:4222") == "nats://127.0.0.1:4222"


def test_credentials_and_role_urls_come_from_settings_with_fallbacks(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("KASSA_MIGRATION_DATABASE_URL", "KASSA_WORKER_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("KASSA_DATABASE_URL", "postgresql://kassa_app:a@db/kassa")
    monkeypatch.setenv("KASSA_NATS_USER", "u")
    monkeypatch.setenv("KASSA_NATS_PASSWORD", "p")
    monkeypatch.setenv("KASSA_NATS_TOKEN", "t")
    monkeypatch.setenv("KASSA_NATS_CREDS", "/etc/kassa/nats.creds")
    single = Settings.from_env()
    assert single.migration_url == single.worker_url == "postgresql://kassa_app:a@db/kassa"
    assert (single.nats_user, single.nats_password, single.nats_token, single.nats_creds) == (
        "u",
        "p",
        "t",
        "/etc/kassa/nats.creds",
    )
    monkeypatch.setenv("KASSA_MIGRATION_DATABASE_URL", "postgresql://kassa_owner:o@db/kassa")
    monkeypatch.setenv("KASSA_WORKER_DATABASE_URL", "postgresql://kassa_worker:w@db/kassa")
    split = Settings.from_env()
    assert split.migration_url == "postgresql://kassa_owner:o@db/kassa"
    assert split.worker_url == "postgresql://kassa_worker:w@db/kassa"
    assert split.database_url == "postgresql://kassa_app:a@db/kassa"


def test_role_urls_carry_the_role_and_its_password() -> None:
    url = roles.with_credentials("postgresql://127.0.0.1:5433", roles.APP, "pw-abcdefghijklmnop", "kassa")
    assert url == "postgresql://kassa_app:pw-abcdefghijklmnop@127.0.0.1:5433/kassa"


def test_the_provisioning_sql_refuses_a_password_or_database_that_would_need_quoting() -> None:
    good = {role: roles.new_password() for role in roles.ROLES}
    sql = roles.provision_sql("kassa", good)
    attributes = {line.split()[2]: line.split() for line in sql.splitlines() if line.startswith("ALTER ROLE")}
    assert set(attributes) == set(roles.ROLES)
    assert "BYPASSRLS" in attributes[roles.OWNER]  # migrations see every tenant
    for role in (roles.APP, roles.WORKER, roles.REPORTING):
        assert "NOBYPASSRLS" in attributes[role] and "BYPASSRLS" not in attributes[role], role
    assert all("NOSUPERUSER" in a and "NOCREATEROLE" in a for a in attributes.values())
    with pytest.raises(ValueError, match="password"):
        roles.provision_sql("kassa", {**good, roles.APP: "x'; DROP ROLE postgres; --aaaaaaaaaa"})
    with pytest.raises(ValueError, match="database"):
        roles.provision_sql('kassa"; DROP DATABASE x; --', good)
