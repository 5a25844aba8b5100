"""The broker's side of ``DataProviderService``: one pooled mTLS channel per agency.

This adapter turns wire types into domain values, so the exchange service never
sees generated code. Any transport failure or deadline becomes
``ProviderUnavailable``; a provider's own refusal keeps its reason.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import grpc

from broker._gen.tillit.provider.v1 import provider_pb2, provider_pb2_grpc
from broker.errors import NotFound, ProviderUnavailable
from broker.rpc import error_info
from broker.values import from_field_value, values_digest

FieldData = str | int | bool | float


@dataclass(frozen=True)
class ProviderRecord:
    values: Mapping[str, FieldData]
    digest: str
    retrieved_at: dt.datetime


@dataclass(frozen=True)
class SubjectFacts:
    age: int
    protected_identity: bool
    guardian_ids: tuple[str, ...]
    ward_ids: tuple[str, ...] = ()


class ProviderClient:
    """Calls data-holding agencies on the broker's behalf."""

    def __init__(
        self,
        addresses: Mapping[str, str],
        credentials: grpc.ChannelCredentials,
        *,
        timeout_ms: int = 2000,
        facts_provider: str = "population-register",
    ) -> None:
        self._addresses = dict(addresses)
        self._credentials = credentials
        self._timeout = timeout_ms / 1000
        self._facts_provider = facts_provider
        self._stubs: dict[str, provider_pb2_grpc.DataProviderServiceAsyncStub] = {}
        self._channels: list[grpc.aio.Channel] = []

    def _stub(self, provider: str) -> provider_pb2_grpc.DataProviderServiceAsyncStub:
        stub = self._stubs.get(provider)
        if stub is None:
            address = self._addresses.get(provider)
            if address is None:
                raise ProviderUnavailable(
                    "no address is configured for the providing agency",
                    metadata={"provider": provider},
                )
            channel = grpc.aio.secure_channel(
                address, self._credentials, options=[("grpc.keepalive_time_ms", 30_000)]
            )
            self._channels.append(channel)
            stub = self._stubs[provider] = provider_pb2_grpc.DataProviderServiceStub(channel)
        return stub

    async def close(self) -> None:
        for channel in self._channels:
            await channel.close()
        self._channels.clear()
        self._stubs.clear()

    def _failure(self, provider: str, exc: grpc.aio.AioRpcError) -> Exception:
        info = error_info(exc)
        if exc.code() == grpc.StatusCode.NOT_FOUND and info is not None:
            return NotFound(
                "the providing agency holds no such record",
                reason=info.reason,
                metadata={"provider": provider},
            )
        return ProviderUnavailable(
            "the providing agency did not answer",
            metadata={"provider": provider, "status": exc.code().name},
        )

    async def fetch(
        self,
        provider: str,
        subject_id: str,
        dataset: str,
        fields: Sequence[str],
        *,
        decision_id: str,
        purpose: str,
    ) -> ProviderRecord:
        request = provider_pb2.FetchRecordRequest(
            subject_id=subject_id,
            dataset=dataset,
            fields=list(fields),
            decision_id=decision_id,
            purpose=purpose,
        )
        try:
            response = await self._stub(provider).FetchRecord(request, timeout=self._timeout)
        except grpc.aio.AioRpcError as exc:
            raise self._failure(provider, exc) from exc
        returned = set(response.values)
        if not returned <= set(fields):
            # A provider that over-shares is not trusted with this exchange.
            raise ProviderUnavailable(
                "the providing agency returned fields that were not asked for",
                metadata={"provider": provider},
            )
        retrieved = (
            response.retrieved_at.ToDatetime(dt.UTC)
            if response.HasField("retrieved_at")
            else dt.datetime.now(dt.UTC)
        )
        return ProviderRecord(
            values={k: from_field_value(v) for k, v in response.values.items()},
            digest=values_digest(response.values),
            retrieved_at=retrieved,
        )

    async def facts(self, subject_id: str) -> SubjectFacts:
        """Age, protected identity and guardians, from the population register."""
        try:
            response = await self._stub(self._facts_provider).GetSubjectFacts(
                provider_pb2.GetSubjectFactsRequest(subject_id=subject_id),
                timeout=self._timeout,
            )
        except grpc.aio.AioRpcError as exc:
            raise self._failure(self._facts_provider, exc) from exc
        return SubjectFacts(
            response.age,
            response.protected_identity,
            tuple(response.guardian_ids),
            tuple(response.ward_ids),
        )
