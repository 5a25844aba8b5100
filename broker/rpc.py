"""gRPC plumbing shared by every Tillit server: errors, authorisation, start-up.

- ``ErrorInterceptor`` is the one place that turns a ``TillitError`` into a
  ``google.rpc.Status`` carrying exactly one ``ErrorInfo``; anything else becomes
  a bare ``INTERNAL`` (logged here, never sent to the caller).
- ``AuthzInterceptor`` enforces least privilege: each RPC names the roles that
  may call it, taken from the client certificate.
- ``create_server`` binds an mTLS port (0 picks a free one) and adds the
  standard health and reflection services.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any, TypeAlias

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from grpc_status import rpc_status

from broker.errors import DOMAIN, PermissionDenied, TillitError
from broker.identity import Identity, Role, peer_identity

log = logging.getLogger(__name__)

_OPEN_SERVICES = ("/grpc.health.v1.Health/", "/grpc.reflection.")

Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"
Continuation: TypeAlias = "Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]]"


def error_status(error: TillitError) -> grpc.Status:
    """The ``grpc.Status`` (with rich details) for a Tillit error."""
    info = error_details_pb2.ErrorInfo(reason=error.reason, domain=DOMAIN, metadata=error.metadata)
    detail = any_pb2.Any()
    detail.Pack(info)
    status = status_pb2.Status(
        code=getattr(code_pb2, error.code.name), message=error.message, details=[detail]
    )
    result: grpc.Status = rpc_status.to_status(status)
    return result


def error_info(exc: grpc.aio.AioRpcError | grpc.RpcError) -> error_details_pb2.ErrorInfo | None:
    """Extract the ``ErrorInfo`` from a failed call (client side)."""
    status = rpc_status.from_call(exc)
    if status is None:
        return None
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return info
    return None


async def _abort(context: grpc.aio.ServicerContext[Any, Any], error: TillitError) -> None:
    status = error_status(error)
    await context.abort(status.code, status.details, status.trailing_metadata)


Around = Callable[[grpc.aio.ServicerContext[Any, Any]], AbstractAsyncContextManager[None]]


def _wrap(handler: Handler, around: Around) -> Handler:
    """Run a unary-unary or unary-stream handler inside ``around(context)``."""
    if handler.unary_unary is not None:
        inner: Any = handler.unary_unary

        async def unary(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            async with around(context):
                return await inner(request, context)
            return None  # unreachable: ``around`` never swallows an error

        return grpc.unary_unary_rpc_method_handler(
            unary, handler.request_deserializer, handler.response_serializer
        )
    if handler.unary_stream is not None:
        inner_stream: Any = handler.unary_stream

        async def stream(
            request: Any, context: grpc.aio.ServicerContext[Any, Any]
        ) -> AsyncIterator[Any]:
            async with around(context):
                async for item in inner_stream(request, context):
                    yield item

        return grpc.unary_stream_rpc_method_handler(
            stream, handler.request_deserializer, handler.response_serializer
        )
    return handler


class ErrorInterceptor(grpc.aio.ServerInterceptor):
    """Map Tillit errors to rich statuses; hide everything else behind INTERNAL."""

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> Handler | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method

        @contextlib.asynccontextmanager
        async def mapped(context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[None]:
            try:
                yield
            except TillitError as exc:
                await _abort(context, exc)
            except grpc.aio.AbortError:
                raise
            except Exception:
                log.exception("unexpected error in %s", method)
                await context.abort(grpc.StatusCode.INTERNAL, "internal error")

        return _wrap(handler, mapped)


class AuthzInterceptor(grpc.aio.ServerInterceptor):
    """Least privilege per RPC: ``policy`` maps a service or full method name to roles.

    A method not covered by the policy is refused. Health and reflection are open
    to any caller holding a valid client certificate (the TLS layer checks that).
    """

    def __init__(self, policy: Mapping[str, Iterable[Role]]) -> None:
        self._policy = {name: frozenset(roles) for name, roles in policy.items()}

    def allowed(self, method: str) -> frozenset[Role]:
        service = method.rsplit("/", 1)[0].lstrip("/")
        return self._policy.get(method.lstrip("/"), self._policy.get(service, frozenset()))

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> Handler | None:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or method.startswith(_OPEN_SERVICES):
            return handler
        roles = self.allowed(method)

        @contextlib.asynccontextmanager
        async def guard(context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[None]:
            try:
                identity = peer_identity(context)
                if identity.role not in roles:
                    raise PermissionDenied(
                        f"role '{identity.role}' may not call {method}",
                        reason="ROLE_NOT_PERMITTED",
                        metadata={"role": str(identity.role), "method": method},
                    )
            except TillitError as exc:
                await _abort(context, exc)
            yield

        return _wrap(handler, guard)


def caller(context: grpc.aio.ServicerContext[Any, Any]) -> Identity:
    """The verified caller of the current RPC (checked by ``AuthzInterceptor``)."""
    return peer_identity(context)


def create_server(
    address: str,
    credentials: grpc.ServerCredentials,
    register: Callable[[grpc.aio.Server], Iterable[str]],
    authz: Mapping[str, Iterable[Role]],
    *,
    options: list[tuple[str, Any]] | None = None,
) -> tuple[grpc.aio.Server, int, health.aio.HealthServicer]:
    """Build an mTLS ``grpc.aio`` server; returns (server, bound port, health servicer).

    ``register`` adds the servicers and returns their full service names, which
    are published through reflection and marked SERVING once started.
    """
    server = grpc.aio.server(
        interceptors=[ErrorInterceptor(), AuthzInterceptor(authz)],
        options=[
            ("grpc.max_receive_message_length", 4 * 1024 * 1024),
            ("grpc.so_reuseport", 0),
            *(options or []),
        ],
    )
    names = list(register(server))
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        [
            *names,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ],
        server,
    )
    port = server.add_secure_port(address, credentials)
    if port == 0:
        raise OSError(f"could not bind {address}")
    return server, port, health_servicer


async def mark_serving(health_servicer: health.aio.HealthServicer, names: Iterable[str]) -> None:
    """Report the server and each named service as SERVING."""
    await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    for name in names:
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
