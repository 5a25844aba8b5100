"""An outside witness of the audit log: it remembers the last checkpoint it accepted and only
accepts a new one that provably extends it.

Each run (``tillit audit witness --state FILE``):

1. fetches the log's latest signed checkpoint and verifies its signature with the log's
   verifier key (the C2SP vkey string; given once with ``--vkey``, then kept in the state file);
2. if the tree did not grow, requires the very same root; if it grew, fetches a consistency
   proof from the remembered size to the new one and checks it (RFC 9162 §2.1.4.2) against the
   remembered root and the newly signed one;
3. only then records the new checkpoint in its state file (written atomically).

A log that was rewritten, even recomputed wholesale and re-signed, cannot produce a valid
consistency proof from a root the witness remembers, and one signed with another key fails the
signature check; a log that shrank, or shows a different root for the same size, is refused
outright. The witness keeps its state on its own storage, outside the broker's control: that is
what makes it an anchor. On the first run there is nothing to compare with, so that
checkpoint is trusted on first use.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from broker import merkle
from broker.checkpoint import CheckpointError, NoteVerifier, open_checkpoint

__all__ = [
    "LogSource",
    "Observation",
    "WitnessError",
    "WitnessState",
    "observe",
]

STATE_VERSION = 1


class WitnessError(Exception):
    """The log failed the witness's check, or the witness cannot check it.

    ``reason`` is one of ``KEY_MISMATCH``, ``NO_VERIFIER_KEY``, ``BAD_STATE``,
    ``BAD_CHECKPOINT``, ``LOG_SHRANK``, ``ROOT_CHANGED``, ``INCONSISTENT``. ``tampered``
    says whether it is evidence against the log (as opposed to a set-up problem).
    """

    def __init__(self, reason: str, message: str, *, tampered: bool) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.tampered = tampered


class LogSource(Protocol):
    """Where the witness reads the log: the gRPC ``AuditService``, or an ``AuditLog`` in tests."""

    async def latest_checkpoint(self) -> str:
        """The latest signed checkpoint note."""
        ...

    async def consistency_proof(self, first_size: int, second_size: int) -> list[bytes]:
        """The consistency proof between two tree sizes."""
        ...


@dataclass(frozen=True)
class WitnessState:
    """What the witness remembers: the log's key and the last checkpoint it accepted."""

    vkey: str
    checkpoint: str
    size: int
    root: bytes
    accepted_at: str

    def to_json(self) -> str:
        return json.dumps(
            {
                "version": STATE_VERSION,
                "vkey": self.vkey,
                "size": self.size,
                "root": base64.b64encode(self.root).decode(),
                "accepted_at": self.accepted_at,
                "checkpoint": self.checkpoint,
            },
            indent=2,
        )

    @classmethod
    def from_json(cls, text: str) -> WitnessState:
        try:
            data = json.loads(text)
            if data.get("version") != STATE_VERSION:
                raise ValueError(f"unknown state version {data.get('version')!r}")
            state = cls(
                vkey=str(data["vkey"]),
                checkpoint=str(data["checkpoint"]),
                size=int(data["size"]),
                root=base64.b64decode(data["root"], validate=True),
                accepted_at=str(data.get("accepted_at", "")),
            )
            # The remembered checkpoint must itself be what the state says it is.
            cp = open_checkpoint(
                state.checkpoint.encode(), NoteVerifier.from_verifier_key(state.vkey)
            )
        except (ValueError, KeyError, TypeError, CheckpointError) as exc:
            raise WitnessError(
                "BAD_STATE", f"the witness state is unreadable: {exc}", tampered=False
            ) from exc
        if (cp.size, cp.root) != (state.size, state.root):
            raise WitnessError(
                "BAD_STATE", "the witness state does not match its own checkpoint", tampered=False
            )
        return state

    @classmethod
    def load(cls, path: Path) -> WitnessState | None:
        """The state in ``path``, or ``None`` if there is none yet."""
        try:
            text = path.read_text()
        except FileNotFoundError:
            return None
        return cls.from_json(text)

    def save(self, path: Path) -> None:
        """Write atomically: a crash leaves the old state or the new one, never half of one."""
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        try:
            with os.fdopen(fd, "w") as handle:
                handle.write(self.to_json() + "\n")
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


@dataclass(frozen=True)
class Observation:
    """One witness run: what it had, what it accepted."""

    previous_size: int | None
    size: int
    root: bytes
    first_use: bool
    proof_hashes: int


def _verifier(state: WitnessState | None, vkey: str | None) -> NoteVerifier:
    if state is not None and vkey and vkey != state.vkey:
        raise WitnessError(
            "KEY_MISMATCH",
            "the given verifier key differs from the one in the witness state; a log does "
            "not change its key silently (start a new state file only after checking why)",
            tampered=False,
        )
    text = vkey or (state.vkey if state is not None else "")
    if not text:
        raise WitnessError(
            "NO_VERIFIER_KEY",
            "first run: pass the log's verifier key with --vkey (`tillit audit vkey` on the "
            "broker host prints it)",
            tampered=False,
        )
    try:
        return NoteVerifier.from_verifier_key(text)
    except CheckpointError as exc:
        raise WitnessError("NO_VERIFIER_KEY", f"bad verifier key: {exc}", tampered=False) from exc


async def observe(
    source: LogSource,
    state: WitnessState | None,
    *,
    vkey: str | None = None,
    now: dt.datetime | None = None,
) -> tuple[Observation, WitnessState]:
    """Check the log's latest checkpoint against ``state``; return what to remember next.

    Raises :class:`WitnessError` if the checkpoint is not validly signed or does not extend
    the remembered one. Does not write anything: the caller saves the new state on success.
    """
    verifier = _verifier(state, vkey)
    note = await source.latest_checkpoint()
    try:
        cp = open_checkpoint(note.encode(), verifier, origin=verifier.name)
    except CheckpointError as exc:
        raise WitnessError(
            "BAD_CHECKPOINT",
            f"the log's latest checkpoint is not validly signed by {verifier.name}: {exc}",
            tampered=True,
        ) from exc
    accepted_at = (now or dt.datetime.now(dt.UTC)).isoformat(timespec="seconds")
    new_state = WitnessState(verifier.verifier_key(), note, cp.size, cp.root, accepted_at)
    if state is None:
        return Observation(None, cp.size, cp.root, True, 0), new_state
    hashes = 0
    if cp.size < state.size:
        raise WitnessError(
            "LOG_SHRANK",
            f"the log's checkpoint covers {cp.size} entries, fewer than the {state.size} "
            f"this witness accepted at {state.accepted_at}: history was cut or rewritten",
            tampered=True,
        )
    if cp.size == state.size:
        if cp.root != state.root:
            raise WitnessError(
                "ROOT_CHANGED",
                f"the log's root for {cp.size} entries differs from the one this witness "
                f"accepted at {state.accepted_at}: history was rewritten",
                tampered=True,
            )
    elif state.size > 0:
        proof = await source.consistency_proof(state.size, cp.size)
        hashes = len(proof)
        try:
            merkle.verify_consistency(state.size, cp.size, proof, state.root, cp.root)
        except merkle.MerkleError as exc:
            raise WitnessError(
                "INCONSISTENT",
                f"the log of {cp.size} entries does not extend the {state.size} entries this "
                f"witness accepted at {state.accepted_at} ({exc}): history was rewritten",
                tampered=True,
            ) from exc
    return Observation(state.size, cp.size, cp.root, False, hashes), new_state
