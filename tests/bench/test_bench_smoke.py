"""``make bench`` in quick mode runs end to end and leaves nothing running.

Performance is not asserted (the machine is shared and targets are not tests);
what is asserted is that the whole path worked: every call answered, some
throughput, an audit log that verifies, and every process it started gone.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from broker.config import REPO_ROOT
from broker.errors import ConfigError
from broker.opa_process import find_opa

pytestmark = pytest.mark.e2e


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_quick_bench_completes_without_errors(tmp_path: Path) -> None:
    try:
        find_opa()
    except ConfigError as exc:
        pytest.skip(str(exc))
    env = {k: v for k, v in os.environ.items() if not k.startswith("BENCH_")}
    env.update(BENCH_QUICK="1", BENCH_DIR=str(tmp_path))
    done = subprocess.run(
        [sys.executable, "-m", "tests.bench.exchange_bench"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    doc = json.loads(done.stdout.strip().splitlines()[-1])

    assert doc["config"]["quick"] is True
    for phase in ("tillit", "echo"):
        assert doc[phase]["errors"] == 0, doc[phase]["errors_by_code"]
        assert doc[phase]["requests_per_s"] > 0
        assert doc[phase]["p50_ms"] > 0
    assert doc["audit"]["verified"] is True
    assert doc["audit"]["entries"] >= doc["tillit"]["completed"]
    assert [json.loads(line) for line in (tmp_path / "history.jsonl").read_text().splitlines()] == [
        doc
    ]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("run-")], "run dir left"
    stray = {name: pid for name, pid in doc["pids"].items() if _running(pid)}
    assert not stray, f"processes still running: {stray}"
