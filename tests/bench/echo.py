"""The benchmark's baseline: a bare ``grpc.aio`` unary echo server over the same mTLS.

It answers ``/tillit.bench.v1.EchoService/Echo`` with the ``FetchDataRequest`` it
was sent, so the load generator drives it exactly as it drives the broker (same
messages, certificates, channels and concurrency), minus everything the broker
does. No interceptors, no database, no policy: the ceiling of this stack.

    python -m tests.bench.echo --pki-dir DIR --listen 127.0.0.1:PORT
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from broker._gen.tillit.exchange.v1 import exchange_pb2
from broker.identity import server_credentials
from broker.pki import tls_files

SERVICE = "tillit.bench.v1.EchoService"
METHOD = f"/{SERVICE}/Echo"


async def _echo(
    request: exchange_pb2.FetchDataRequest, context: grpc.aio.ServicerContext[Any, Any]
) -> exchange_pb2.FetchDataRequest:
    return request


def create_echo_server(listen: str, pki_dir: Path) -> tuple[grpc.aio.Server, int, Any]:
    """An unstarted echo server with the broker's certificate: (server, port, health)."""
    server = grpc.aio.server()
    handler = grpc.unary_unary_rpc_method_handler(
        _echo,
        request_deserializer=exchange_pb2.FetchDataRequest.FromString,
        response_serializer=exchange_pb2.FetchDataRequest.SerializeToString,
    )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(SERVICE, {"Echo": handler}),)
    )
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    port = server.add_secure_port(listen, server_credentials(tls_files(pki_dir, "broker")))
    if port == 0:
        raise OSError(f"could not bind {listen}")
    return server, port, health_servicer


async def serve(listen: str, pki_dir: Path) -> None:
    """Serve until SIGINT or SIGTERM."""
    server, port, health_servicer = create_echo_server(listen, pki_dir)
    await server.start()
    for name in ("", SERVICE):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    print(f"echo serving on {listen.rsplit(':', 1)[0]}:{port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(1.0)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pki-dir", type=Path, required=True)
    parser.add_argument("--listen", default="127.0.0.1:0")
    args = parser.parse_args(argv)
    asyncio.run(serve(args.listen, args.pki_dir))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
