"""Scopes: one list, implications as documented, and every registered route names one."""

from __future__ import annotations

import pytest

import kassa.api.app  # noqa: F401 - registers every route
from kassa.api.routing import REGISTRY, endpoint
from kassa.identity.domain import scopes


def test_admin_grants_every_tenant_scope_but_not_the_platforms() -> None:
    granted = scopes.expand(frozenset({"admin"}))
    assert set(scopes.TENANT_SCOPES) <= granted
    assert "tenants:write" not in granted


def test_write_implies_read_of_the_same_area_only() -> None:
    granted = scopes.expand(frozenset({"accounts:write"}))
    assert granted == {"accounts:write", "accounts:read"}
    assert "transactions:read" not in scopes.expand(frozenset({"accounts:write"}))
    assert scopes.expand(frozenset({"accounts:read"})) == {"accounts:read"}


def test_review_implies_compliance_read_but_not_write() -> None:
    granted = scopes.expand(frozenset({"compliance:review"}))
    assert granted == {"compliance:review", "compliance:read"}


def test_platform_scope_is_never_grantable_to_a_tenant_key() -> None:
    assert "tenants:write" not in scopes.TENANT_SCOPES
    assert set(scopes.ALL_SCOPES) == set(scopes.TENANT_SCOPES) | scopes.PLATFORM_SCOPES
    assert set(scopes.DESCRIPTIONS) == set(scopes.ALL_SCOPES)


# The routes without an API key (a provider's signed callback) have no scope, by construction
# of endpoint(); the authorization matrix names them one by one.
@pytest.mark.parametrize("ep", [ep for ep in REGISTRY if ep.auth != "none"], ids=lambda ep: f"{ep.method} {ep.path}")
def test_every_registered_route_names_a_known_scope(ep: object) -> None:
    scope = getattr(ep, "scope")  # noqa: B009 - the dataclass field, read the same way for every route
    if getattr(ep, "auth") == "none":  # noqa: B009 - an unauthenticated route (a signed provider callback)
        assert scope is None
        return
    assert scope in scopes.ALL_SCOPES
    assert (scope == "tenants:write") == (getattr(ep, "auth") == "admin")  # noqa: B009


def test_a_route_cannot_be_declared_without_a_scope() -> None:
    with pytest.raises(TypeError):
        endpoint("GET", "/v1/unscoped", summary="x", scope=None)
    with pytest.raises(TypeError):
        endpoint("GET", "/v1/unscoped", summary="x")  # type: ignore[call-arg]  # the missing scope is the test
