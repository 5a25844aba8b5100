"""Errors and authorisation through a real mTLS server on a loopback port."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from broker._gen.tillit.exchange.v1 import exchange_pb2, exchange_pb2_grpc
from broker.errors import InvalidSubjectId, PolicyDenied, Reason
from broker.identity import Role, channel_credentials, server_credentials
from broker.pki import tls_files
from broker.rpc import create_server, error_info, mark_serving


class _Servicer(exchange_pb2_grpc.ExchangeServiceServicer):
    async def FetchData(
        self, request: exchange_pb2.FetchDataRequest, context: Any
    ) -> exchange_pb2.FetchDataResponse:
        if request.dataset == "bad-subject":
            raise InvalidSubjectId("the identity number has a wrong check digit")
        if request.dataset == "denied":
            raise PolicyDenied(
                [
                    Reason("CONSENT_MISSING", "no consent", "GDPR Art. 7"),
                    Reason("FIELDS_NOT_PERMITTED", "too much", "GDPR Art. 5(1)(c)"),
                ],
                decision_id="d-1",
                audit_index=7,
            )
        if request.dataset == "crash":
            raise RuntimeError("secret internal detail 198507179862")
        return exchange_pb2.FetchDataResponse()


@pytest.fixture
async def port(pki_dir: Path) -> AsyncIterator[int]:
    def register(server: grpc.aio.Server) -> list[str]:
        exchange_pb2_grpc.add_ExchangeServiceServicer_to_server(_Servicer(), server)
        return ["tillit.exchange.v1.ExchangeService"]

    server, bound, health = create_server(
        "127.0.0.1:0",
        server_credentials(tls_files(pki_dir, "broker")),
        register,
        {"tillit.exchange.v1.ExchangeService": [Role.REQUESTER]},
    )
    await server.start()
    await mark_serving(health, ["tillit.exchange.v1.ExchangeService"])
    yield bound
    await server.stop(None)


async def _call(pki_dir: Path, port: int, party: str, dataset: str) -> grpc.aio.AioRpcError:
    credentials = channel_credentials(tls_files(pki_dir, party))
    async with grpc.aio.secure_channel(f"localhost:{port}", credentials) as channel:
        stub = exchange_pb2_grpc.ExchangeServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.FetchData(exchange_pb2.FetchDataRequest(dataset=dataset))
        return caught.value


async def test_domain_error_becomes_status_with_one_error_info(pki_dir: Path, port: int) -> None:
    error = await _call(pki_dir, port, "exempelby-preschool-fee", "bad-subject")
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    info = error_info(error)
    assert info is not None
    assert (info.reason, info.domain) == ("INVALID_SUBJECT_ID", "tillit.dev")


async def test_policy_denial_carries_first_reason_and_all_codes(pki_dir: Path, port: int) -> None:
    error = await _call(pki_dir, port, "exempelby-preschool-fee", "denied")
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    info = error_info(error)
    assert info is not None
    assert info.reason == "CONSENT_MISSING"
    assert info.metadata["reasons"] == "CONSENT_MISSING,FIELDS_NOT_PERMITTED"
    assert info.metadata["audit_index"] == "7"
    assert info.metadata["article"] == "GDPR Art. 7"


async def test_unexpected_error_is_internal_without_details(pki_dir: Path, port: int) -> None:
    error = await _call(pki_dir, port, "exempelby-preschool-fee", "crash")
    assert error.code() == grpc.StatusCode.INTERNAL
    assert "198507179862" not in (error.details() or "")
    assert "secret" not in (error.details() or "")
    assert error_info(error) is None


async def test_role_not_listed_for_the_service_is_refused(pki_dir: Path, port: int) -> None:
    error = await _call(pki_dir, port, "dpo", "anything")
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    info = error_info(error)
    assert info is not None
    assert info.reason == "ROLE_NOT_PERMITTED"
    assert info.metadata["role"] == "dpo"
