"""Start the development identity provider and the citizen portal from settings.

Used by ``tillit idp``, ``tillit portal`` and ``tillit demo``; each returns a
running ``Site`` that ``stop`` shuts down together with what it opened.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from broker.client import BrokerClient
from broker.config import Settings
from broker.errors import ConfigError
from broker.keys import dev_idp_key
from broker.pki import TlsFiles, init_pki, tls_files
from consent.web.app import PortalConfig, create_portal_app
from consent.web.idp import Client, IdpConfig, create_idp_app, personas
from consent.web.oidc import OpenIdProvider
from consent.web.server import WebServer, base_url, bind, serve_https

IDP_PARTY = "dev-idp"
PORTAL_PARTY = "citizen-portal"
CLIENT_NAME = "Tillit"


@dataclass
class Site:
    """A running web server and the clients it owns."""

    url: str
    server: WebServer
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    async def stop(self) -> None:
        await self.server.stop()
        for close in self.closers:
            await close()


def _tls(settings: Settings, party: str) -> TlsFiles:
    files = tls_files(settings.pki_dir, party)
    if not files.cert.exists():
        if not files.ca.exists():
            raise ConfigError(f"no development CA in {settings.pki_dir}; run `tillit pki init`")
        init_pki(settings.pki_dir)  # adds only the certificates that are missing
    return files


def bind_or_fail(listen: str) -> socket.socket:
    try:
        return bind(listen)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot listen on {listen}: {exc}") from exc


async def start_idp(
    settings: Settings, *, listen: str | None = None, redirect_uris: Sequence[str] = ()
) -> Site:
    """``tillit idp``: the development OpenID provider, on HTTPS."""
    tls = _tls(settings, IDP_PARTY)
    key = await asyncio.to_thread(dev_idp_key, settings.keys_dir)
    people = await asyncio.to_thread(personas, settings.providers.population_size)
    sock = bind_or_fail(listen or settings.idp.listen)
    url = base_url(sock)
    client = Client(
        settings.identity.audience,
        CLIENT_NAME,
        tuple(redirect_uris) or (f"https://{settings.portal.listen}/auth/callback",),
    )
    app = create_idp_app(
        IdpConfig(
            issuer=settings.identity.issuer,
            base_url=url,
            key=key,
            clients={client.client_id: client},
            personas=people,
            token_lifetime=min(settings.idp.token_lifetime, settings.identity.max_lifetime),
            code_lifetime=settings.idp.code_lifetime,
        )
    )
    return Site(url, await serve_https(app, sock, tls))


async def start_portal(
    settings: Settings,
    *,
    listen: str | None = None,
    broker_target: str | None = None,
    idp_url: str | None = None,
) -> Site:
    """``tillit portal``: the citizen's web page, on HTTPS, calling the broker over mTLS."""
    tls = _tls(settings, PORTAL_PARTY)
    sock = bind_or_fail(listen or settings.portal.listen)
    url = base_url(sock)
    ca_setting = settings.portal.idp_ca
    ca: Path | None = (
        None
        if ca_setting == "system"
        else Path(ca_setting)
        if ca_setting
        else settings.pki_dir / "ca.crt"
    )
    provider = OpenIdProvider(
        idp_url or settings.portal.idp_url or f"https://{settings.idp.listen}",
        issuer=settings.identity.issuer,
        client_id=settings.identity.audience,
        ca_file=ca,
        max_lifetime=settings.identity.max_lifetime,
        leeway=settings.identity.leeway,
    )
    broker = BrokerClient(broker_target or settings.broker.listen, tls)
    try:
        app = create_portal_app(
            PortalConfig(url, settings.opa.policies, settings.portal.session_lifetime),
            broker,
            provider,
        )
        server = await serve_https(app, sock, tls)
    except BaseException:
        await broker.close()
        await provider.close()
        sock.close()
        raise
    return Site(url, server, [broker.close, provider.close])
