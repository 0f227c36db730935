"""promtool and prometheus for the tests, from Debian's `prometheus` package.

Looked up in order: the tools cache `${KASSA_TOOLS_DIR:-~/.cache/kassa/tools}/prometheus`, then
the PATH; when neither has them, the package is fetched with `apt-get download` (after an
`apt-get update` if the first try fails) and unpacked with `dpkg -x` into the cache. Nothing is
installed system-wide, so CI on a fresh machine repeats exactly this. When it cannot be done the
error says what to install by hand.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

PACKAGE = "prometheus"
_APT_TIMEOUT_S = 300


class ToolUnavailable(RuntimeError):
    pass


def tools_dir() -> Path:
    return Path(os.environ.get("KASSA_TOOLS_DIR") or Path.home() / ".cache" / "kassa" / "tools")


def _run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=_APT_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return subprocess.CompletedProcess(cmd, 127, "", repr(exc))


def _download(workdir: Path) -> Path:
    attempts = []
    for prepare in ([], ["apt-get", "update"]):
        if prepare:
            attempts.append(_run(prepare, workdir))
        result = _run(["apt-get", "download", PACKAGE], workdir)
        attempts.append(result)
        debs = sorted(workdir.glob(f"{PACKAGE}_*.deb"))
        if result.returncode == 0 and debs:
            return debs[-1]
    detail = "\n".join(f"$ {' '.join(r.args)} -> {r.returncode}\n{(r.stderr or r.stdout)[-600:]}" for r in attempts)
    raise ToolUnavailable(
        f"promtool/prometheus are needed and could not be fetched from Debian's '{PACKAGE}' package "
        f"(apt-get download, then apt-get update and again). Install it (apt-get install {PACKAGE}) or "
        f"unpack it into {tools_dir() / PACKAGE} (dpkg -x prometheus_*.deb there).\n{detail}"
    )


def _fetch(root: Path) -> None:
    root.parent.mkdir(parents=True, exist_ok=True)
    with open(root.parent / f"{PACKAGE}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two test runs fetching at once unpack only once
        if (root / "usr" / "bin" / "promtool").exists():
            return
        with tempfile.TemporaryDirectory(dir=root.parent) as tmp:
            deb = _download(Path(tmp))
            unpacked = Path(tmp) / "root"
            result = _run(["dpkg", "-x", str(deb), str(unpacked)], Path(tmp))
            if result.returncode != 0:
                raise ToolUnavailable(f"dpkg -x {deb.name} failed: {result.stderr[-600:]}")
            shutil.rmtree(root, ignore_errors=True)
            unpacked.rename(root)


def binary(name: str) -> Path:
    """The path of `promtool` or `prometheus`; fetches the package when needed."""
    root = tools_dir() / PACKAGE
    cached = root / "usr" / "bin" / name
    if cached.exists():
        return cached
    on_path = shutil.which(name)
    if on_path:
        return Path(on_path)
    _fetch(root)
    if not cached.exists():
        raise ToolUnavailable(f"{PACKAGE} was unpacked into {root} but has no usr/bin/{name}")
    return cached
