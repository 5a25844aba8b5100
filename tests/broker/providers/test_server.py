"""The demo agencies over real mutual-TLS sockets, called with the broker's certificate."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from broker import personnummer
from broker._gen.tillit.provider.v1 import provider_pb2, provider_pb2_grpc
from broker.catalog import Catalog
from broker.errors import ConfigError
from broker.identity import channel_credentials
from broker.pki import init_pki, tls_files
from broker.provider_client import ProviderClient
from broker.providers import AGENCIES, SEED, SERVICE_NAME, SyntheticPopulation, run_providers
from broker.rpc import error_info
from broker.values import from_field_value, to_field_value, values_digest

SIZE = 2_000
# The generated async stub type exists only for type checkers.
Connect = Callable[[str, str], Any]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("pki")
    init_pki(directory)
    return directory


@pytest.fixture(scope="module")
def population() -> SyntheticPopulation:
    # The same size and seed as the servers: the same people.
    return SyntheticPopulation(SIZE, SEED)


async def _start(
    pki: Path, agencies: tuple[str, ...]
) -> tuple[asyncio.Task[None], asyncio.Event, dict[str, int]]:
    ports: asyncio.Future[dict[str, int]] = asyncio.get_running_loop().create_future()
    stop = asyncio.Event()
    task = asyncio.create_task(
        run_providers(
            pki,
            {agency: "127.0.0.1:0" for agency in agencies},
            population_size=SIZE,
            ready=ports.set_result,
            stop=stop,
        )
    )
    # Surface a start-up failure instead of waiting for a port forever.
    either: list[asyncio.Future[Any]] = [task, ports]
    await asyncio.wait(either, timeout=30, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        task.result()
    return task, stop, ports.result()


@pytest.fixture(scope="module")
async def ports(pki: Path) -> AsyncIterator[dict[str, int]]:
    task, stop, bound = await _start(pki, AGENCIES)
    yield bound
    stop.set()
    await asyncio.wait_for(task, timeout=30)


@pytest.fixture
async def connect(pki: Path, ports: dict[str, int]) -> AsyncIterator[Connect]:
    channels: list[grpc.aio.Channel] = []

    def open_stub(agency: str, as_party: str = "broker") -> Any:
        credentials = channel_credentials(tls_files(pki, as_party))
        channel = grpc.aio.secure_channel(f"127.0.0.1:{ports[agency]}", credentials)
        channels.append(channel)
        return provider_pb2_grpc.DataProviderServiceStub(channel)

    yield open_stub
    for channel in channels:
        await channel.close()


async def _fails(call: object) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call  # type: ignore[misc]
    return caught.value


def _reason(error: grpc.aio.AioRpcError) -> str:
    info = error_info(error)
    assert info is not None
    assert info.domain == "tillit.dev"
    return str(info.reason)


async def test_all_agencies_report_serving(pki: Path, ports: dict[str, int]) -> None:
    assert set(ports) == set(AGENCIES)
    assert len(set(ports.values())) == 3
    credentials = channel_credentials(tls_files(pki, "broker"))
    for port in ports.values():
        async with grpc.aio.secure_channel(f"127.0.0.1:{port}", credentials) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            for service in ("", SERVICE_NAME):
                reply = await health.Check(health_pb2.HealthCheckRequest(service=service))
                assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_fetch_returns_typed_values(
    connect: Connect, population: SyntheticPopulation
) -> None:
    pnr = population.an_adult()
    expected = population.record("tax-agency", "taxed-income", pnr)
    assert expected is not None
    before = dt.datetime.now(dt.UTC)
    reply = await connect("tax-agency", "broker").FetchRecord(
        provider_pb2.FetchRecordRequest(
            subject_id=pnr,
            dataset="taxed-income",
            fields=["taxed_income_sek", "assessment_date", "income_year"],
            decision_id="d-1",
            purpose="preschool-fee",
        )
    )
    values = reply.values
    assert set(values) == {"taxed_income_sek", "assessment_date", "income_year"}
    assert values["taxed_income_sek"].WhichOneof("kind") == "int_value"
    assert values["taxed_income_sek"].int_value == expected["taxed_income_sek"]
    assert values["income_year"].int_value == expected["income_year"]
    assert values["assessment_date"].date_value == expected["assessment_date"].isoformat()
    retrieved = reply.retrieved_at.ToDatetime(dt.UTC)
    assert before - dt.timedelta(seconds=1) <= retrieved <= dt.datetime.now(dt.UTC)


async def test_fetch_returns_only_requested_fields(
    connect: Connect, population: SyntheticPopulation
) -> None:
    pnr = population.a_child()
    reply = await connect("population-register", "broker").FetchRecord(
        provider_pb2.FetchRecordRequest(subject_id=pnr, dataset="address", fields=["city"])
    )
    assert list(reply.values) == ["city"]
    expected = population.record("population-register", "address", pnr)
    assert expected is not None
    assert reply.values["city"].string_value == expected["city"]


async def test_fetch_bool_and_special_category(
    connect: Connect, population: SyntheticPopulation
) -> None:
    pnr = population.a_person_on_sick_leave()
    reply = await connect("social-insurance", "broker").FetchRecord(
        provider_pb2.FetchRecordRequest(
            subject_id=f"{pnr[:8]}-{pnr[8:]}",
            dataset="sickness-benefit",
            fields=["on_sick_leave", "diagnosis_code"],
        )
    )
    assert reply.values["on_sick_leave"].WhichOneof("kind") == "bool_value"
    assert reply.values["on_sick_leave"].bool_value is True
    assert reply.values["diagnosis_code"].string_value


async def test_unknown_subject_is_not_found(connect: Connect) -> None:
    stranger = personnummer.synthetic_numbers(1, seed=5, born_between=(dt.date(2026, 1, 1),) * 2)
    error = await _fails(
        connect("tax-agency", "broker").FetchRecord(
            provider_pb2.FetchRecordRequest(
                subject_id=stranger[0], dataset="taxed-income", fields=["income_year"]
            )
        )
    )
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert _reason(error) == "SUBJECT_NOT_FOUND"
    assert stranger[0] not in (error.details() or "")


@pytest.mark.parametrize("subject", ["19900517-0000", "not a number", "", "900517-9816"])
async def test_bad_identity_number_is_invalid_argument(connect: Connect, subject: str) -> None:
    error = await _fails(
        connect("tax-agency", "broker").FetchRecord(
            provider_pb2.FetchRecordRequest(
                subject_id=subject, dataset="taxed-income", fields=["income_year"]
            )
        )
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert _reason(error) == "INVALID_SUBJECT_ID"
    if subject:
        assert subject not in (error.details() or "")


async def test_dataset_of_another_agency_is_not_held(
    connect: Connect, population: SyntheticPopulation
) -> None:
    error = await _fails(
        connect("tax-agency", "broker").FetchRecord(
            provider_pb2.FetchRecordRequest(
                subject_id=population.an_adult(), dataset="address", fields=["city"]
            )
        )
    )
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert _reason(error) == "DATASET_NOT_HELD"


async def test_unknown_fields_are_invalid(
    connect: Connect, population: SyntheticPopulation
) -> None:
    error = await _fails(
        connect("population-register", "broker").FetchRecord(
            provider_pb2.FetchRecordRequest(
                subject_id=population.an_adult(), dataset="address", fields=["city", "iban"]
            )
        )
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    info = error_info(error)
    assert info is not None
    assert info.reason == "UNKNOWN_FIELDS"
    assert info.metadata["fields"] == "iban"


@pytest.mark.parametrize("party", ["exempelby-preschool-fee", "tax-agency", "citizen-portal"])
async def test_only_the_broker_may_call(
    connect: Connect, population: SyntheticPopulation, party: str
) -> None:
    stub = connect("population-register", party)
    error = await _fails(
        stub.FetchRecord(
            provider_pb2.FetchRecordRequest(
                subject_id=population.an_adult(), dataset="address", fields=["city"]
            )
        )
    )
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert _reason(error) == "ROLE_NOT_PERMITTED"
    facts_error = await _fails(
        stub.GetSubjectFacts(provider_pb2.GetSubjectFactsRequest(subject_id=population.a_child()))
    )
    assert facts_error.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_subject_facts_of_a_child(connect: Connect, population: SyntheticPopulation) -> None:
    today = dt.date.today()
    child = population.a_child(today)
    reply = await connect("population-register", "broker").GetSubjectFacts(
        provider_pb2.GetSubjectFactsRequest(subject_id=child)
    )
    assert reply.age == personnummer.age_on(child, today) < 18
    assert not reply.protected_identity
    citizen = population.citizen(child)
    assert citizen is not None
    assert tuple(reply.guardian_ids) == citizen.guardian_ids
    assert len(reply.guardian_ids) >= 1


async def test_subject_facts_of_a_protected_person(
    connect: Connect, population: SyntheticPopulation
) -> None:
    protected = population.a_protected_person()
    reply = await connect("population-register", "broker").GetSubjectFacts(
        provider_pb2.GetSubjectFactsRequest(subject_id=protected)
    )
    assert reply.protected_identity
    assert reply.age == personnummer.age_on(protected, dt.date.today())


async def test_subject_facts_errors(connect: Connect) -> None:
    register = connect("population-register", "broker")
    error = await _fails(
        register.GetSubjectFacts(provider_pb2.GetSubjectFactsRequest(subject_id="1990"))
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert _reason(error) == "INVALID_SUBJECT_ID"
    stranger = personnummer.synthetic_numbers(1, seed=6, born_between=(dt.date(2026, 1, 1),) * 2)
    error = await _fails(
        register.GetSubjectFacts(provider_pb2.GetSubjectFactsRequest(subject_id=stranger[0]))
    )
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert _reason(error) == "SUBJECT_NOT_FOUND"


@pytest.mark.parametrize("agency", ["tax-agency", "social-insurance"])
async def test_only_the_population_register_gives_facts(
    connect: Connect, population: SyntheticPopulation, agency: str
) -> None:
    error = await _fails(
        connect(agency, "broker").GetSubjectFacts(
            provider_pb2.GetSubjectFactsRequest(subject_id=population.a_child())
        )
    )
    assert error.code() == grpc.StatusCode.UNIMPLEMENTED
    assert _reason(error) == "NOT_PROVIDED"


async def test_the_brokers_client_reads_what_agencies_send(
    pki: Path, ports: dict[str, int], population: SyntheticPopulation
) -> None:
    # The contract from the other side: the broker's own adapter, digest included.
    client = ProviderClient(
        {agency: f"127.0.0.1:{port}" for agency, port in ports.items()},
        channel_credentials(tls_files(pki, "broker")),
    )
    try:
        parent = population.a_parent_on_leave()
        fields = ["daily_amount_sek", "period_start"]
        record = await client.fetch(
            "social-insurance",
            parent,
            "parental-benefit",
            fields,
            decision_id="d-2",
            purpose="parental-benefit",
        )
        expected = population.record("social-insurance", "parental-benefit", parent)
        assert expected is not None
        catalog = Catalog.load().get("parental-benefit")
        wire = {name: to_field_value(catalog.fields[name], expected[name]) for name in fields}
        assert record.values == {name: from_field_value(v) for name, v in wire.items()}
        assert record.values["period_start"] == expected["period_start"].isoformat()
        assert record.digest == values_digest(wire)
        facts = await client.facts(population.a_child())
        assert facts.age < 18
        assert facts.guardian_ids
    finally:
        await client.close()


async def test_run_providers_stops_gracefully(pki: Path) -> None:
    task, stop, bound = await _start(pki, ("tax-agency",))
    credentials = channel_credentials(tls_files(pki, "broker"))
    async with grpc.aio.secure_channel(f"127.0.0.1:{bound['tax-agency']}", credentials) as ch:
        health = health_pb2_grpc.HealthStub(ch)
        reply = await health.Check(health_pb2.HealthCheckRequest(service=SERVICE_NAME))
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        stop.set()
        await asyncio.wait_for(task, timeout=30)
        error = await _fails(
            health.Check(health_pb2.HealthCheckRequest(service=SERVICE_NAME), timeout=5)
        )
        assert error.code() == grpc.StatusCode.UNAVAILABLE


async def test_run_providers_refuses_unknown_agencies(pki: Path) -> None:
    with pytest.raises(ConfigError, match="not a demo agency"):
        await run_providers(pki, {"secret-police": "127.0.0.1:0"}, population_size=10)
