"""The benchmark's load generator: one process, C concurrent unary calls, fixed window.

It runs in its own process (never the server's), opens a few mTLS channels with
a requester certificate, and keeps ``concurrency`` calls in flight until the
measured window closes. Every call carries a unique idempotency key and a
subject drawn from the list it was given. Calls completing during the warm-up
are checked but not timed; calls completing in the window are counted and timed.
Several processes started with the same ``start_at`` measure the same window.

    python -m tests.bench.loadgen SPEC.json   # prints a LoadResult as one JSON line
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import random
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from broker._gen.tillit.exchange.v1 import exchange_pb2
from broker.identity import channel_credentials
from broker.pki import tls_files
from tests.bench.echo import METHOD as ECHO_METHOD

FETCH_METHOD = "/tillit.exchange.v1.ExchangeService/FetchData"
MODES = ("tillit", "echo")


@dataclass(frozen=True)
class LoadSpec:
    """What one load-generator process does."""

    mode: str  # "tillit" (FetchData on the broker) or "echo" (the bare baseline)
    target: str
    pki_dir: str
    party: str
    subjects: list[str]
    dataset: str
    fields: list[str]
    purpose: str
    legal_basis: str
    concurrency: int
    channels: int
    warmup: float
    duration: float
    start_at: float  # wall-clock time (time.time()) at which the warm-up begins
    key_prefix: str  # makes idempotency keys unique across runs and processes
    seed: int = 0
    call_timeout: float = 10.0


@dataclass
class LoadResult:
    """What one process measured; latencies in milliseconds, for calls in the window."""

    completed: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    warmup_completed: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    error_sample: str = ""
    window_s: float = 0.0
    # How late this process was for ``start_at`` (it starts at once if late).
    late_s: float = 0.0


def spec_from_json(text: str) -> LoadSpec:
    spec = LoadSpec(**json.loads(text))
    if spec.mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}")
    if spec.concurrency < 1 or spec.channels < 1 or spec.duration <= 0 or not spec.subjects:
        raise ValueError("concurrency, channels, duration and subjects must be positive")
    return spec


def _callables(
    spec: LoadSpec, channels: Sequence[grpc.aio.Channel]
) -> list[grpc.aio.UnaryUnaryMultiCallable[exchange_pb2.FetchDataRequest, Any]]:
    if spec.mode == "echo":
        return [
            channel.unary_unary(
                ECHO_METHOD,
                request_serializer=exchange_pb2.FetchDataRequest.SerializeToString,
                response_deserializer=exchange_pb2.FetchDataRequest.FromString,
            )
            for channel in channels
        ]
    return [
        channel.unary_unary(
            FETCH_METHOD,
            request_serializer=exchange_pb2.FetchDataRequest.SerializeToString,
            response_deserializer=exchange_pb2.FetchDataResponse.FromString,
        )
        for channel in channels
    ]


async def run(spec: LoadSpec) -> LoadResult:
    """Drive the target as ``spec`` says and return what was measured."""
    credentials = channel_credentials(tls_files(Path(spec.pki_dir), spec.party))
    # A local subchannel pool gives each channel its own TCP/TLS connection.
    options = [("grpc.use_local_subchannel_pool", 1)]
    channels = [
        grpc.aio.secure_channel(spec.target, credentials, options=options)
        for _ in range(spec.channels)
    ]
    result = LoadResult(window_s=spec.duration)
    errors: Counter[str] = Counter()
    try:
        for channel in channels:
            await asyncio.wait_for(channel.channel_ready(), 30)
        calls = _callables(spec, channels)
        result.late_s = max(0.0, time.time() - spec.start_at)
        await asyncio.sleep(max(0.0, spec.start_at - time.time()))
        begin = time.perf_counter()
        window_start = begin + spec.warmup
        window_end = window_start + spec.duration

        async def worker(number: int) -> None:
            call = calls[number % len(calls)]
            rng = random.Random(spec.seed * 1_000_003 + number)
            sequence = 0
            while time.perf_counter() < window_end:
                sequence += 1
                request = exchange_pb2.FetchDataRequest(
                    subject_id=rng.choice(spec.subjects),
                    dataset=spec.dataset,
                    fields=spec.fields,
                    purpose=spec.purpose,
                    legal_basis=spec.legal_basis,
                    case_reference=f"BENCH-{number}-{sequence}",
                    idempotency_key=f"{spec.key_prefix}-{number}-{sequence}",
                )
                started = time.perf_counter()
                try:
                    await call(request, timeout=spec.call_timeout)
                except grpc.aio.AioRpcError as exc:
                    errors[exc.code().name] += 1
                    if not result.error_sample:
                        result.error_sample = f"{exc.code().name}: {exc.details()}"
                    continue
                finished = time.perf_counter()
                if window_start <= finished < window_end:
                    result.completed += 1
                    result.latencies_ms.append((finished - started) * 1000)
                elif finished < window_start:
                    result.warmup_completed += 1

        await asyncio.gather(*(worker(n) for n in range(spec.concurrency)))
    finally:
        for channel in channels:
            await channel.close()
    result.errors = dict(errors)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m tests.bench.loadgen SPEC.json", file=sys.stderr)
        return 2
    result = asyncio.run(run(spec_from_json(Path(args[0]).read_text())))
    print(json.dumps(dataclasses.asdict(result)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
