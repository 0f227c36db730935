"""Every `domain/` package imports only the standard library, `kassa.shared` and its own context's errors."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[3] / "src" / "kassa"
DOMAIN_FILES = sorted(SRC.glob("*/domain/**/*.py"))


def imported_modules(path: Path) -> list[str]:
    """Absolute module names a file imports, resolving relative imports against its package."""
    package = ".".join(path.relative_to(SRC.parent).with_suffix("").parts[:-1])
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                found.append(f"{base}.{node.module}" if node.module else base)
            else:
                found.append(node.module or "")
    return found


def allowed(module: str, context: str) -> bool:
    top = module.split(".")[0]
    if top == "kassa":
        return (
            module == "kassa.shared"
            or module.startswith("kassa.shared.")
            or module == f"kassa.{context}.errors"
            or module.startswith(f"kassa.{context}.domain")
        )
    return top == "__future__" or top in sys.stdlib_module_names


def test_there_are_domain_packages_to_check() -> None:
    contexts = {p.relative_to(SRC).parts[0] for p in DOMAIN_FILES}
    assert {"ledger", "identity"} <= contexts


@pytest.mark.parametrize("path", DOMAIN_FILES, ids=[str(p.relative_to(SRC)) for p in DOMAIN_FILES])
def test_a_domain_module_imports_nothing_but_the_standard_library_and_the_shared_kernel(path: Path) -> None:
    context = path.relative_to(SRC).parts[0]
    forbidden = [m for m in imported_modules(path) if not allowed(m, context)]
    assert forbidden == [], f"{path.relative_to(SRC)} imports {forbidden}"


def test_the_import_rule_catches_a_framework_import(tmp_path: Path) -> None:
    assert not allowed("asyncpg", "ledger")
    assert not allowed("kassa.ledger.adapters.engine", "ledger")
    assert not allowed("kassa.payments.errors", "ledger")
    assert allowed("kassa.ledger.errors", "ledger") and allowed("datetime", "ledger")
