"""``make bench-audit``: audit log appends per second at size 0 and at 1,000,000, and how
long ``tillit audit verify`` takes over the large log.

Everything runs in a fresh directory under ``.bench/audit-*`` (on the real disk, so SQLite's
fsync costs what it costs), removed afterwards unless ``--keep``:

1. a store is filled with ``--entries`` entries in bulk, through the same canonical encoding,
   leaf hashing and ``merkle.Frontier`` the log uses, plus the tree state and a checkpoint
   signed with that data directory's log key;
2. ``--rounds`` times, alternately on a fresh empty store and on the large one:
   ``--appends`` appends through ``AuditLog.append`` from ``--concurrency`` concurrent callers
   (group commit, ``synchronous=FULL``), after an untimed tenth as warm-up; the medians are
   compared, so that load from elsewhere on the machine hits both sides alike;
3. ``tillit --data-dir ... audit verify`` runs as a subprocess over the large log; its wall time
   and verdict are recorded.

It prints a table and one JSON line (also appended to ``.bench/history.jsonl``). Exit status 1
if the large log does not verify, the ratio of append rates is below ``--min-ratio`` or verify
takes longer than ``--max-verify``. ``BENCH_QUICK=1`` is a smoke run (20,000 entries).

    python -m tests.bench.audit_bench [--entries N] [--appends N] [--concurrency N] [--keep]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import hashlib
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from broker import db, merkle
from broker.app import log_signer
from broker.audit import (
    ALLOW,
    DENY,
    AuditEntry,
    AuditLog,
    AuditRecord,
    canonical_entry,
    row_values,
    time_ordered_id,
)
from broker.checkpoint import Checkpoint, sign
from broker.config import REPO_ROOT, Settings, load_settings
from broker.errors import Reason
from broker.models import AuditEntryRow, CheckpointRow, TreeStateRow

REQUESTERS = [f"municipality-{i:02d}" for i in range(12)]
DATASETS = {
    "taxed-income": ("tax-agency", ("income_year", "taxed_income")),
    "household": ("population-register", ("household_size", "address")),
    "parental-benefit": ("social-insurance", ("days_taken", "amount")),
}
PURPOSES = ["preschool-fee-reduction", "housing-allowance", "school-transport"]


@dataclass(frozen=True)
class Rates:
    appends: int
    seconds: float
    commits: int

    @property
    def per_second(self) -> float:
        return self.appends / self.seconds


def synthetic_record(rng: random.Random, subjects: int) -> AuditRecord:
    """One plausible exchange entry (pseudonymous, no data), allowed nine times in ten."""
    dataset = rng.choice(list(DATASETS))
    provider, fields = DATASETS[dataset]
    allowed = rng.random() < 0.9
    subject = hashlib.sha256(str(rng.randrange(subjects)).encode()).hexdigest()
    return AuditRecord(
        kind="exchange",
        requester=rng.choice(REQUESTERS),
        service="e-service",
        provider=provider,
        dataset=dataset,
        subject_pseudonym=f"2026-11:{subject}",
        purpose=rng.choice(PURPOSES),
        legal_basis="GDPR Art. 6(1)(e); Skollagen 8 kap. 16 §",
        case_reference=f"CASE-{rng.randrange(10**6):06d}",
        requested_fields=fields,
        released_fields=fields if allowed else (),
        decision=ALLOW if allowed else DENY,
        reasons=() if allowed else (Reason("CONSENT_MISSING", "no consent", "GDPR Art. 7"),),
        policy_revision="sha256:" + "ab" * 16,
        decision_id=str(uuid.UUID(int=rng.getrandbits(128))),
        consent_id=str(uuid.UUID(int=rng.getrandbits(128))) if allowed else "",
        data_digest=hashlib.sha256(rng.randbytes(8)).hexdigest() if allowed else "",
        details={"idempotency_key": str(uuid.UUID(int=rng.getrandbits(128)))},
    )


def bulk_populate(settings: Settings, entries: int, *, batch: int = 20_000, seed: int = 7) -> float:
    """Fill an empty store with ``entries`` entries the way the log would have; return seconds.

    Leaves are computed by ``canonical_entry`` and ``merkle.leaf_hash`` and folded into a
    ``Frontier``; rows are written with ``row_values`` through SQLAlchemy Core (so stored
    exactly as the log stores them), then the tree state and a signed checkpoint.
    """
    db.migrate(settings.database_url)
    sync_url = settings.database_url.replace("sqlite+aiosqlite", "sqlite")
    engine = sa.create_engine(sync_url)
    rng = random.Random(seed)
    frontier = merkle.Frontier()
    start_time = dt.datetime.now(dt.UTC) - dt.timedelta(days=30)
    step = dt.timedelta(days=30) / max(entries, 1)
    began = time.perf_counter()
    with engine.connect() as connection:
        # Only for the bulk fill: the timed appends run with the broker's own settings.
        connection.exec_driver_sql("PRAGMA synchronous=OFF")
        while frontier.size < entries:
            rows = []
            for _ in range(min(batch, entries - frontier.size)):
                index = frontier.size
                time_ = start_time + step * index
                record = synthetic_record(rng, subjects=200_000)
                entry_id = time_ordered_id(time_)
                leaf = merkle.leaf_hash(canonical_entry(index, entry_id, time_, record))
                frontier.append(leaf)
                rows.append(row_values(AuditEntry(index, entry_id, time_, record, leaf)))
            connection.execute(sa.insert(AuditEntryRow), rows)
            connection.commit()
        now = dt.datetime.now(dt.UTC)
        connection.execute(
            sa.insert(TreeStateRow),
            [
                {
                    "id": 1,
                    "size": frontier.size,
                    "frontier": [h.hex() for h in frontier.hashes()],
                    "updated_at": now,
                }
            ],
        )
        signer = log_signer(settings)
        note = sign(Checkpoint(settings.audit.origin, frontier.size, frontier.root()), signer)
        connection.execute(
            sa.insert(CheckpointRow),
            [
                {
                    "size": frontier.size,
                    "root_hash": frontier.root(),
                    "note": note.decode(),
                    "created_at": now,
                }
            ],
        )
        connection.commit()
    engine.dispose()
    return time.perf_counter() - began


async def measure_appends(settings: Settings, appends: int, concurrency: int) -> Rates:
    """Time ``appends`` appends from ``concurrency`` callers on the store of ``settings``."""
    await asyncio.to_thread(db.migrate, settings.database_url)
    engine = db.make_engine(settings.database_url)
    log = AuditLog(
        db.sessionmaker(engine),
        log_signer(settings),
        origin=settings.audit.origin,
        batch_max=settings.audit.batch_max,
        batch_wait_ms=settings.audit.batch_wait_ms,
    )
    await log.start()
    rng = random.Random(11)
    warmup = appends // 10

    async def run(count: int) -> float:
        queue = iter([synthetic_record(rng, subjects=200_000) for _ in range(count)])

        async def caller() -> None:
            for record in queue:
                await log.append(record)

        began = time.perf_counter()
        await asyncio.gather(*(caller() for _ in range(concurrency)))
        return time.perf_counter() - began

    try:
        # Untimed warm-up: the steady state is what matters, not the first cold pages.
        await run(warmup)
        commits_before = log.commits
        seconds = await run(appends)
        await log.checkpoint()
    finally:
        await log.stop()
        await engine.dispose()
    return Rates(appends, seconds, log.commits - commits_before)


def _median(runs: Sequence[Rates]) -> Rates:
    return sorted(runs, key=lambda r: r.per_second)[(len(runs) - 1) // 2]


def run_verify(data_dir: Path) -> tuple[float, dict[str, Any]]:
    began = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "broker.cli", "--data-dir", str(data_dir), "audit", "verify"],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO_ROOT,
    )
    seconds = time.perf_counter() - began
    try:
        verdict: dict[str, Any] = json.loads(done.stdout)
    except json.JSONDecodeError:
        verdict = {"ok": False, "problem": done.stdout + done.stderr}
    return seconds, verdict


def settings_for(data_dir: Path) -> Settings:
    settings = load_settings(None, env={})
    from dataclasses import replace

    return replace(settings, broker=replace(settings.broker, data_dir=data_dir))


def main(argv: Sequence[str] | None = None) -> int:
    quick = os.environ.get("BENCH_QUICK") == "1"
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=20_000 if quick else 1_000_000)
    parser.add_argument("--appends", type=int, default=2_000 if quick else 20_000)
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument("--min-ratio", type=float, default=0.8)
    parser.add_argument("--max-verify", type=float, default=60.0)
    parser.add_argument("--rounds", type=int, default=1 if quick else 3)
    parser.add_argument("--keep", action="store_true", help="keep the bench directory")
    args = parser.parse_args(argv)

    bench_root = REPO_ROOT / ".bench"
    bench_root.mkdir(exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="audit-", dir=bench_root))
    zero_runs: list[Rates] = []
    large_runs: list[Rates] = []
    try:
        large = settings_for(workdir / "large")
        print(f"bench directory {workdir}", flush=True)
        fill = bulk_populate(large, args.entries)
        print(f"filled {args.entries:,} entries in {fill:.1f} s", flush=True)
        # Interleaved rounds, each on a fresh empty store and on the large one, so load from
        # elsewhere on the machine hits both sides alike; the medians are compared.
        for round_ in range(args.rounds):
            empty = settings_for(workdir / f"empty-{round_}")
            zero_runs.append(asyncio.run(measure_appends(empty, args.appends, args.concurrency)))
            large_runs.append(asyncio.run(measure_appends(large, args.appends, args.concurrency)))
            print(
                f"round {round_ + 1}: size 0 {zero_runs[-1].per_second:,.0f} appends/s, "
                f"size {args.entries:,} {large_runs[-1].per_second:,.0f} appends/s",
                flush=True,
            )
        verify_seconds, verdict = run_verify(large.data_dir)
        print(
            f"tillit audit verify over {verdict.get('tree_size', '?'):,} entries: "
            f"{verify_seconds:.1f} s, ok={verdict.get('ok')}",
            flush=True,
        )
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)

    at_zero, at_large = _median(zero_runs), _median(large_runs)
    ratio = at_large.per_second / at_zero.per_second
    result = {
        "bench": "audit",
        "time": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()} {os.cpu_count()} cpu, {platform.python_version()}",
        "entries": args.entries,
        "appends": args.appends,
        "rounds": args.rounds,
        "appends_per_s_runs_at_0": [round(r.per_second) for r in zero_runs],
        "appends_per_s_runs_at_n": [round(r.per_second) for r in large_runs],
        "concurrency": args.concurrency,
        "appends_per_s_at_0": round(at_zero.per_second),
        "appends_per_s_at_n": round(at_large.per_second),
        "ratio": round(ratio, 3),
        "commits_at_0": at_zero.commits,
        "commits_at_n": at_large.commits,
        "fill_s": round(fill, 1),
        "verify_s": round(verify_seconds, 1),
        "verify_ok": bool(verdict.get("ok")),
        "verify_tree_size": verdict.get("tree_size"),
    }
    print()
    print(f"{'appends/s at size 0':<34}{at_zero.per_second:>12,.0f}")
    print(f"{f'appends/s at size {args.entries:,}':<34}{at_large.per_second:>12,.0f}")
    print(f"{'ratio (want >= ' + str(args.min_ratio) + ')':<34}{ratio:>12.2f}")
    print(f"{'verify seconds (want <= ' + str(args.max_verify) + ')':<34}{verify_seconds:>12.1f}")
    print(json.dumps(result))
    with (bench_root / "history.jsonl").open("a") as history:
        history.write(json.dumps(result) + "\n")
    failed = (
        not verdict.get("ok")
        or verdict.get("tree_size")
        != args.entries + args.rounds * (args.appends + args.appends // 10)
        or ratio < args.min_ratio
        or verify_seconds > args.max_verify
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
