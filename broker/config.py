"""Configuration: one TOML file, overridden by ``TILLIT_<SECTION>_<KEY>`` variables.

Everything has a working default for the embedded set-up: a data directory
(``.data`` under the current folder) holding keys, certificates and the SQLite
file, a local OPA process started by the broker, and the demo agencies on
fixed loopback ports.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from broker.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parent.parent
OPA_VERSION = "1.22.2"

DEFAULT_PROVIDERS = {
    "tax-agency": "127.0.0.1:50061",
    "population-register": "127.0.0.1:50062",
    "social-insurance": "127.0.0.1:50063",
}


@dataclass(frozen=True)
class BrokerSettings:
    listen: str = "127.0.0.1:50051"
    data_dir: Path = Path(".data")
    # Grace period for in-flight RPCs on shutdown, seconds.
    shutdown_grace: float = 5.0


@dataclass(frozen=True)
class OpaSettings:
    # "local": the broker starts and supervises OPA; "external": use ``url``.
    mode: str = "local"
    url: str = ""
    binary: str = ""
    policies: Path = REPO_ROOT / "policies"
    # Per-decision deadline, milliseconds. Past it the broker fails closed.
    timeout_ms: int = 500
    # The policy decision to query.
    decision_path: str = "tillit/exchange/decision"
    # Seconds between checks of the policies folder for changes (local mode; 0: off),
    # and between checks that an external OPA still has the revision (external mode).
    watch_interval: float = 2.0


@dataclass(frozen=True)
class DatabaseSettings:
    # Empty means SQLite in the data directory.
    url: str = ""


@dataclass(frozen=True)
class AuditSettings:
    # Most entries made durable in one commit, and how long an entry may wait
    # for others to join its commit (milliseconds).
    batch_max: int = 256
    batch_wait_ms: float = 2.0
    # Seconds between scheduled checkpoints (when the log has grown).
    checkpoint_interval: float = 10.0
    origin: str = "tillit.test/audit"
    # Days after a calendar month ends before its audit pseudonym key is destroyed
    # (``tillit audit shred``), unlinking that month's entries from people; 0 keeps keys.
    retention_days: int = 365


@dataclass(frozen=True)
class ProviderSettings:
    addresses: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_PROVIDERS))
    timeout_ms: int = 2000
    population_size: int = 10_000


@dataclass(frozen=True)
class IdentitySettings:
    """Who may speak for a citizen: ID tokens from one trusted identity provider."""

    issuer: str = "tillit-dev-idp"
    audience: str = "tillit-citizen-portal"
    # JWK Set of the provider's signing keys; empty means the development
    # provider's, kept in the data directory (``keys/idp-jwks.json``).
    jwks: str = ""
    # Longest token lifetime accepted, and allowed clock skew, seconds.
    max_lifetime: int = 3600
    leeway: int = 60


@dataclass(frozen=True)
class PortalSettings:
    """The citizen portal (``tillit portal``): HTTPS, calling the broker as "citizen-portal"."""

    listen: str = "127.0.0.1:8443"
    # Base URL of the OpenID provider; empty means the development one at [idp] listen.
    idp_url: str = ""
    # CA bundle for the provider's TLS certificate: a file, "system", or empty for the dev CA.
    idp_ca: str = ""
    # Longest a signed-in session lasts, seconds (never longer than the ID token).
    session_lifetime: int = 1800


@dataclass(frozen=True)
class IdpSettings:
    """The development identity provider (``tillit idp``); never for production."""

    listen: str = "127.0.0.1:8444"
    # ID token lifetime and authorization-code lifetime, seconds.
    token_lifetime: int = 900
    code_lifetime: int = 60


@dataclass(frozen=True)
class Settings:
    broker: BrokerSettings = field(default_factory=BrokerSettings)
    opa: OpaSettings = field(default_factory=OpaSettings)
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    audit: AuditSettings = field(default_factory=AuditSettings)
    providers: ProviderSettings = field(default_factory=ProviderSettings)
    identity: IdentitySettings = field(default_factory=IdentitySettings)
    portal: PortalSettings = field(default_factory=PortalSettings)
    idp: IdpSettings = field(default_factory=IdpSettings)

    @property
    def data_dir(self) -> Path:
        return self.broker.data_dir

    @property
    def pki_dir(self) -> Path:
        return self.data_dir / "pki"

    @property
    def keys_dir(self) -> Path:
        return self.data_dir / "keys"

    @property
    def idp_jwks(self) -> Path:
        return Path(self.identity.jwks) if self.identity.jwks else self.keys_dir / "idp-jwks.json"

    @property
    def database_url(self) -> str:
        if self.database.url:
            return self.database.url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'tillit.db').resolve()}"


def _coerce(section: str, key: str, current: Any, raw: Any) -> Any:
    try:
        if isinstance(current, bool):
            if isinstance(raw, bool):
                return raw
            return str(raw).lower() in ("1", "true", "yes", "on")
        if isinstance(current, int):
            return int(raw)
        if isinstance(current, float):
            return float(raw)
        if isinstance(current, Path):
            return Path(raw)
        if isinstance(current, Mapping):
            if isinstance(raw, Mapping):
                return {str(k): str(v) for k, v in raw.items()}
            pairs = [p.split("=", 1) for p in str(raw).split(",") if p]
            return {k.strip(): v.strip() for k, v in pairs}
        return str(raw)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"[{section}] {key}: {exc}") from exc


def _apply(section_name: str, section: Any, values: Mapping[str, Any], origin: str) -> Any:
    known = {f.name: f for f in fields(section)}
    changes = {}
    for key, raw in values.items():
        name = key.replace("-", "_")
        if name not in known:
            raise ConfigError(f"{origin}: unknown setting [{section_name}] {key}")
        changes[name] = _coerce(section_name, key, getattr(section, name), raw)
    return replace(section, **changes)


def load_settings(path: Path | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Defaults, then the TOML file (if any), then environment overrides."""
    env = os.environ if env is None else env
    settings = Settings()
    path = path or (Path(env["TILLIT_CONFIG"]) if env.get("TILLIT_CONFIG") else None)
    if path is not None:
        try:
            document = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read config {path}: {exc}") from exc
        for section_name, values in document.items():
            if section_name not in {f.name for f in fields(settings)} or not isinstance(
                values, dict
            ):
                raise ConfigError(f"{path}: unknown section [{section_name}]")
            section = getattr(settings, section_name)
            settings = replace(
                settings, **{section_name: _apply(section_name, section, values, str(path))}
            )
    for section_field in fields(settings):
        section = getattr(settings, section_field.name)
        prefix = f"TILLIT_{section_field.name.upper()}_"
        overrides = {k[len(prefix) :].lower(): v for k, v in env.items() if k.startswith(prefix)}
        if overrides:
            settings = replace(
                settings,
                **{section_field.name: _apply(section_field.name, section, overrides, "env")},
            )
    if settings.opa.mode not in ("local", "external"):
        raise ConfigError("[opa] mode must be 'local' or 'external'")
    if settings.opa.mode == "external" and not settings.opa.url:
        raise ConfigError("[opa] url is required when mode = 'external'")
    return settings
