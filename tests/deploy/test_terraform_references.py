"""Every resource, data source and module a Terraform module's expressions name is declared in that
module: what `terraform validate` would check first, which these machines cannot run."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.deploy

Parsed = dict[Path, dict[str, Any]]
# `aws_x.name.attr`, `data.aws_x.name`, `module.name`, `random_x.name`: what an expression may name.
_REFERENCE = re.compile(
    r"(?<![\w.])(data\.)?((?:aws|random|tls|null|helm|kubernetes)_\w+)\.(\w+)|(?<![\w.])module\.(\w+)"
)


def _declared(docs: list[dict[str, Any]]) -> set[str]:
    found: set[str] = set()
    for doc in docs:
        for prefix, section in (("", "resource"), ("data.", "data")):
            for block in doc.get(section, []):
                for kind, named in block.items():
                    found.update(f"{prefix}{kind}.{name}" for name in named)
        for block in doc.get("module", []):
            found.update(f"module.{name}" for name in block)
    return found


def _named(value: Any) -> set[str]:
    text = value if isinstance(value, str) else repr(value)
    names = set()
    for match in _REFERENCE.finditer(text):
        data, kind, name, module = match.groups()
        names.add(f"module.{module}" if module else f"{data or ''}{kind}.{name}")
    return names


def test_every_reference_in_a_module_names_something_that_module_declares(terraform: Parsed) -> None:
    by_module: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for path, doc in terraform.items():
        by_module.setdefault(path.parts[:-1], []).append(doc)
    missing = []
    for module, docs in by_module.items():
        declared = _declared(docs)
        for doc in docs:
            for name in _named(doc):
                if name not in declared:
                    missing.append(("/".join(module), name))
    assert missing == []


def test_the_reference_check_finds_an_undeclared_resource() -> None:
    docs = [{"resource": [{"aws_kms_key": {"this": {}}}], "output": [{"arn": {"value": "${aws_kms_key.msk.arn}"}}]}]
    assert _named(docs[0]) - _declared(docs) == {"aws_kms_key.msk"}
