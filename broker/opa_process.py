"""Start, supervise and stop a local OPA server with ``policies/`` loaded.

OPA listens on loopback only, over TLS, and requires a client certificate from
our CA (``--authentication=tls``). The binary is found at the pinned version:
configured path, then ``$TILLIT_OPA``, then ``opa`` on PATH, then the per-user
cache that ``make`` fills (``~/.cache/tillit/opa-v<version>/opa``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import socket
import subprocess
from pathlib import Path

from broker.config import OPA_VERSION
from broker.errors import ConfigError
from broker.pki import TlsFiles

log = logging.getLogger(__name__)


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "tillit"


def _version_of(binary: str) -> str:
    try:
        out = subprocess.run(
            [binary, "version"], capture_output=True, text=True, timeout=20, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return ""
    for line in out.splitlines():
        if line.startswith("Version:"):
            return line.split(":", 1)[1].strip()
    return ""


def find_opa(configured: str = "") -> str:
    """The OPA binary at the pinned version, or ``ConfigError`` saying how to get it."""
    candidates = [
        configured,
        os.environ.get("TILLIT_OPA", ""),
        shutil.which("opa") or "",
        str(cache_dir() / f"opa-v{OPA_VERSION}" / "opa"),
    ]
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and _version_of(candidate) == OPA_VERSION:
            return candidate
    raise ConfigError(
        f"OPA {OPA_VERSION} not found; run `make tools` (builds it with go install) "
        "or set [opa] binary"
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class OpaProcess:
    """A supervised ``opa run --server`` child process."""

    def __init__(
        self,
        binary: str,
        policies: Path,
        tls: TlsFiles,
        *,
        port: int = 0,
        watch: bool = True,
        log_file: Path | None = None,
    ) -> None:
        self.binary = binary
        self.policies = policies
        self.tls = tls
        self.port = port or free_port()
        self.watch = watch
        self.log_file = log_file
        self._proc: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        cmd = [
            self.binary,
            "run",
            "--server",
            "--addr",
            f"127.0.0.1:{self.port}",
            "--diagnostic-addr",
            "",
            "--tls-cert-file",
            str(self.tls.cert),
            "--tls-private-key-file",
            str(self.tls.key),
            "--tls-ca-cert-file",
            str(self.tls.ca),
            "--authentication",
            "tls",
            "--log-level",
            "error",
            "--skip-version-check",
            "--ignore",
            "*_test.rego",
            "--ignore",
            "testdata",
            "--ignore",
            ".*",
        ]
        if self.watch:
            cmd.append("--watch")
        if self.policies.is_file():
            # A bundle file: activated as a whole, reloaded when renamed over.
            cmd += ["--bundle", str(self.policies)]
        else:
            cmd.append(str(self.policies))
        return cmd

    async def start(self) -> None:
        # OPA's own log goes to a file of its own (it never sees identity numbers:
        # the policy input holds none); without one, errors reach our stderr.
        stderr: int | None = None
        if self.log_file is not None:
            self.log_file.parent.mkdir(parents=True, exist_ok=True)
            stderr = os.open(self.log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            self._proc = await asyncio.create_subprocess_exec(
                *self.command(),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=stderr,
                start_new_session=True,
            )
        finally:
            if stderr is not None:
                os.close(stderr)

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def running(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    async def stop(self, grace: float = 5.0) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), grace)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()

    async def wait(self) -> int:
        if self._proc is None:
            return 0
        return await self._proc.wait()
