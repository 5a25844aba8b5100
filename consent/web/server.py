"""Serve an ASGI app over HTTPS with uvicorn, inside the caller's event loop.

The socket is bound before the app is built, so the app knows its own address
(port 0 picks a free one), and ``stop`` shuts the server down gracefully. Signals
stay with the caller (the CLI or the demo), not with uvicorn.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from dataclasses import dataclass

import uvicorn
from starlette.types import ASGIApp

from broker.pki import TlsFiles


def split_listen(listen: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port`` too) as a pair."""
    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"listen address must be host:port, not {listen!r}")
    return host.strip("[]"), int(port)


def bind(listen: str) -> socket.socket:
    """A TCP socket bound to ``listen`` (not yet listening)."""
    host, port = split_listen(listen)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(False)
    return sock


def base_url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"https://{shown}:{port}"


@dataclass
class WebServer:
    """A running HTTPS server."""

    url: str
    _server: uvicorn.Server
    _task: asyncio.Task[None]

    async def stop(self) -> None:
        self._server.should_exit = True
        await self._task


async def serve_https(app: ASGIApp, sock: socket.socket, tls: TlsFiles) -> WebServer:
    """Start serving ``app`` on the bound ``sock`` with ``tls``'s certificate."""
    config = uvicorn.Config(
        app,
        ssl_certfile=str(tls.cert),
        ssl_keyfile=str(tls.key),
        lifespan="off",
        log_level="warning",
        access_log=False,
        server_header=False,
        proxy_headers=False,
        timeout_graceful_shutdown=5,
    )
    config.load()
    server = uvicorn.Server(config)
    server.lifespan = config.lifespan_class(config)
    await server.startup(sockets=[sock])
    url = base_url(sock)

    async def run() -> None:
        try:
            await server.main_loop()
        finally:
            with contextlib.suppress(Exception):
                await server.shutdown(sockets=[sock])

    return WebServer(url, server, asyncio.create_task(run(), name=f"https {url}"))
