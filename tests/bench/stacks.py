"""Summarise sampled stacks (py-spy's ``--format raw``, i.e. collapsed stacks).

Each input line is ``frame;frame;...;leaf COUNT``. The summary gives, as a share
of all samples, the broker's components (each sample goes to the first rule of
``COMPONENTS`` that matches a frame of its stack), the functions where time was
spent (own) and the functions that were on the stack (inclusive), with the
event loop's scaffolding left out. SQLAlchemy's asyncio layer runs the ORM in
greenlets, whose stacks py-spy reports apart from the coroutine that awaits them.

    python -m tests.bench.stacks broker.pyspy.txt
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

# "function (path/to/file.py:123)" -> "function (file-or-package/file.py)"
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<path>[^()]*?)(?::\d+)?\)$")


# (component, substrings of a frame): first match wins, so specific rules go first.
COMPONENTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("audit log (append, commit, Merkle, signing)", ("broker/audit.py", "broker/merkle.py")),
    (
        "SQL reads/writes (SQLAlchemy ORM + aiosqlite)",
        ("sqlalchemy/", "aiosqlite/", "consent/store.py", "sqlite3"),
    ),
    ("OPA decision (opa-client, aiohttp, TLS, JSON)", ("opa_client/", "aiohttp/", "policy.py")),
    ("asyncio TLS/sockets (mostly the OPA connection)", ("asyncio/sslproto.py", "ssl.py")),
    ("provider calls (gRPC client)", ("provider_client.py", "grpc/aio/_call.py", "_channel.py")),
    (
        "exchange logic (validate, pseudonymise, digests)",
        (
            "broker/exchange.py",
            "broker/keys.py",
            "broker/values.py",
            "broker/personnummer.py",
            "broker/catalog.py",
            "consent/",
        ),
    ),
    (
        "incoming RPC: interceptors, identity, convert",
        ("broker/rpc.py", "broker/identity.py", "broker/convert.py", "broker/servicers.py"),
    ),
    ("event loop and gRPC core callbacks", ("asyncio/", "grpc/")),
)


def component(frames: Sequence[str]) -> str:
    for name, needles in COMPONENTS:
        if any(needle in frame for frame in frames for needle in needles):
            return name
    return "other" if frames else "no Python frame (C code holding the GIL)"


def short_frame(frame: str) -> str:
    """A frame without its line number and with only the last two path parts."""
    match = _FRAME.match(frame)
    if match is None:
        return frame
    parts = Path(match["path"]).parts
    return f"{match['func']} ({'/'.join(parts[-2:])})"


def summarise(raw: str, top: int = 40) -> str:
    """A report of own and inclusive shares of the samples in ``raw``."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    parts: Counter[str] = Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        count = int(count_text)
        raw_frames = [f for f in stack.split(";") if f]
        parts[component(raw_frames)] += count
        frames = [short_frame(f) for f in raw_frames] or ["(no Python frame)"]
        total += count
        own[frames[-1]] += count
        inclusive.update(dict.fromkeys(set(frames), count))
    lines = [f"{total} samples"]
    # Frames on (nearly) every stack are the process's and event loop's scaffolding.
    useful = Counter({k: v for k, v in inclusive.items() if v < 0.9 * total})
    for title, counts in (
        ("by component", parts),
        ("own time", own),
        ("inclusive time (scaffolding left out)", useful),
    ):
        lines.append(f"\n-- {title}, % of samples")
        for frame, count in counts.most_common(top):
            lines.append(f"{100 * count / max(total, 1):6.1f}  {frame}")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m tests.bench.stacks STACKS.txt", file=sys.stderr)
        return 2
    print(summarise(Path(args[0]).read_text()), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
