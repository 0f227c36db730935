"""The Dockerfile is multi-stage, runs as a numeric non-root user, writes only under /tmp, and passes checkov."""

from __future__ import annotations

import fnmatch
import json
import shlex
from typing import Any

import pytest

from support.deploy import DOCKER, REPO, assert_checkov_clean

pytestmark = pytest.mark.deploy


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in (DOCKER / "Dockerfile").read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        keyword, _, args = line.partition(" ")
        out.append((keyword.upper(), args.strip()))
    return out


def stages() -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for keyword, args in instructions():
        if keyword == "FROM":
            result.append([])
        if result:
            result[-1].append((keyword, args))
    return result


def test_checkov_finds_nothing_in_the_dockerfile_and_every_skip_has_a_reason(checkov: dict[str, Any]) -> None:
    assert_checkov_clean(checkov["dockerfile"])


def test_the_image_is_built_in_one_stage_and_runs_from_a_clean_one() -> None:
    build, runtime = stages()
    assert build[0][1].endswith(" AS build") and runtime[0][1].endswith(" AS runtime")
    runtime_copies = [args for keyword, args in runtime if keyword == "COPY"]
    # The runtime stage gets the built venv and the migrations, never the sources or the installers.
    assert runtime_copies == ["--from=build /opt/kassa /opt/kassa", "migrations /opt/kassa/migrations"]
    install = " ".join(args for keyword, args in build if keyword == "RUN")
    assert "--constraint requirements.lock" in install  # exactly the locked versions
    assert "uninstall" in install and " uv pip" in install  # no installer left in the image


def test_the_image_runs_as_a_numeric_non_root_user_with_state_under_tmp_only() -> None:
    runtime = stages()[-1]
    users = [args for keyword, args in runtime if keyword == "USER"]
    assert users == ["10001:10001"]  # numeric: runAsNonRoot can verify it
    env = " ".join(args for keyword, args in runtime if keyword == "ENV")
    assert "KASSA_DATA_DIR=/tmp/kassa" in env
    assert "PYTHONDONTWRITEBYTECODE=1" in env  # read-only root: no .pyc written at run time
    assert "KASSA_MIGRATIONS_DIR=/opt/kassa/migrations" in env
    assert [args for keyword, args in runtime if keyword == "WORKDIR"] == ["/tmp"]  # noqa: S108 - scratch dir


def test_one_image_serves_every_role_of_the_kassa_command() -> None:
    from kassa.cli.main import build_parser

    runtime = stages()[-1]
    entrypoint = json.loads(dict(runtime)["ENTRYPOINT"])
    assert entrypoint == ["kassa"]
    assert json.loads(dict(runtime)["CMD"]) == ["api"]
    parser = build_parser()
    for role in (["api"], ["worker", "relay"], ["worker", "consumers"], ["worker", "all"], ["migrate"]):
        assert parser.parse_args(role).func, role


def test_the_build_context_holds_only_what_the_dockerfile_copies() -> None:
    rules = [line for line in (REPO / ".dockerignore").read_text().splitlines() if line and not line.startswith("#")]
    assert rules[0] == "*"  # exclude everything, then re-include
    included = [rule[1:].rstrip("/") for rule in rules if rule.startswith("!")]
    for keyword, args in instructions():
        if keyword != "COPY" or args.startswith("--from"):
            continue
        *sources, _ = shlex.split(args)
        for source in sources:
            assert any(fnmatch.fnmatch(source.rstrip("/"), pattern) for pattern in included), source
    assert not any(fnmatch.fnmatch(".venv", pattern) for pattern in included)
