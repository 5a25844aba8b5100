"""The demo agencies' gRPC side: ``DataProviderService`` over mutual TLS.

Only the broker may call an agency (role ``broker`` in its client certificate).
The servicer translates wire types to the domain (``registry.Agency``) and back.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_health.v1 import health

from broker._gen.tillit.provider.v1 import provider_pb2, provider_pb2_grpc
from broker.catalog import Catalog
from broker.errors import ConfigError
from broker.identity import Role, server_credentials
from broker.pki import TlsFiles, tls_files
from broker.providers.registry import AGENCIES, SEED, Agency, SyntheticPopulation
from broker.rpc import create_server, mark_serving
from broker.values import to_field_value

log = logging.getLogger(__name__)

SERVICE_NAME: str = provider_pb2.DESCRIPTOR.services_by_name["DataProviderService"].full_name
_Context = grpc.aio.ServicerContext[Any, Any]


class DataProviderServicer(provider_pb2_grpc.DataProviderServiceServicer):
    """One agency's ``DataProviderService``."""

    def __init__(self, agency_id: str, population: SyntheticPopulation, catalog: Catalog) -> None:
        self._agency = Agency(agency_id, population, catalog)
        self._catalog = catalog

    async def FetchRecord(
        self, request: provider_pb2.FetchRecordRequest, context: _Context
    ) -> provider_pb2.FetchRecordResponse:
        values = self._agency.fetch(request.dataset, list(request.fields), request.subject_id)
        fields = self._catalog.get(request.dataset).fields
        retrieved_at = Timestamp()
        retrieved_at.FromDatetime(dt.datetime.now(dt.UTC))
        return provider_pb2.FetchRecordResponse(
            values={name: to_field_value(fields[name], value) for name, value in values.items()},
            retrieved_at=retrieved_at,
        )

    async def GetSubjectFacts(
        self, request: provider_pb2.GetSubjectFactsRequest, context: _Context
    ) -> provider_pb2.GetSubjectFactsResponse:
        facts = self._agency.facts(request.subject_id)
        return provider_pb2.GetSubjectFactsResponse(
            age=facts.age,
            protected_identity=facts.protected_identity,
            guardian_ids=list(facts.guardian_ids),
            ward_ids=list(facts.ward_ids),
        )


def create_provider_server(
    agency_id: str,
    address: str,
    tls: TlsFiles,
    population: SyntheticPopulation,
    catalog: Catalog,
) -> tuple[grpc.aio.Server, int, health.aio.HealthServicer]:
    """An unstarted mTLS server for ``agency_id``: (server, bound port, health servicer)."""

    def register(server: grpc.aio.Server) -> list[str]:
        provider_pb2_grpc.add_DataProviderServiceServicer_to_server(
            DataProviderServicer(agency_id, population, catalog), server
        )
        return [SERVICE_NAME]

    return create_server(address, server_credentials(tls), register, {SERVICE_NAME: [Role.BROKER]})


async def run_providers(
    pki_dir: Path,
    addresses: Mapping[str, str],
    population_size: int = 10_000,
    ready: Callable[[dict[str, int]], None] | None = None,
    stop: asyncio.Event | None = None,
    *,
    seed: int = SEED,
    catalog: Catalog | None = None,
    grace: float = 5.0,
) -> None:
    """Serve the demo agencies named in ``addresses`` until ``stop`` is set.

    All agencies share one synthetic population, so a person known to the tax
    agency is the same person in the population register. ``ready`` gets the
    bound port of each agency once every server is SERVING.
    """
    unknown = sorted(set(addresses) - set(AGENCIES))
    if unknown:
        raise ConfigError(f"not a demo agency: {', '.join(unknown)}")
    catalog = catalog or Catalog.load()
    population = SyntheticPopulation(population_size, seed)
    # Building the population is CPU work: keep it off the event loop.
    await asyncio.to_thread(population.numbers)
    stop = stop or asyncio.Event()
    servers: list[tuple[grpc.aio.Server, health.aio.HealthServicer]] = []
    try:
        ports: dict[str, int] = {}
        for agency_id, address in addresses.items():
            server, port, health_servicer = create_provider_server(
                agency_id, address, tls_files(pki_dir, agency_id), population, catalog
            )
            servers.append((server, health_servicer))
            await server.start()
            await mark_serving(health_servicer, [SERVICE_NAME])
            ports[agency_id] = port
            log.info("agency %s serving on port %d", agency_id, port)
        if ready is not None:
            ready(ports)
        await stop.wait()
    finally:
        for _, health_servicer in servers:
            await health_servicer.enter_graceful_shutdown()
        await asyncio.gather(*(server.stop(grace) for server, _ in servers))
