"""The witness: trust on first use, then only checkpoints that provably extend what it saw."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from broker import auditor, merkle
from broker.checkpoint import Checkpoint, NoteSigner, NoteVerifier, sign
from broker.witness import WitnessError, WitnessState, observe

ORIGIN = "tillit.test/audit"
SIGNER = NoteSigner.from_private_key(ORIGIN, Ed25519PrivateKey.from_private_bytes(b"\x05" * 32))
VKEY = SIGNER.verifier().verifier_key()
OTHER = NoteSigner.from_private_key(ORIGIN, Ed25519PrivateKey.from_private_bytes(b"\x06" * 32))


class FakeLog:
    """A log held as leaf hashes in memory, serving signed checkpoints and proofs."""

    def __init__(self, size: int, *, signer: NoteSigner = SIGNER, salt: bytes = b"") -> None:
        self.leaves = [merkle.leaf_hash(salt + b"entry %d" % i) for i in range(size)]
        self.signer = signer
        self.proofs_asked: list[tuple[int, int]] = []

    def grow(self, count: int) -> None:
        start = len(self.leaves)
        self.leaves += [merkle.leaf_hash(b"entry %d" % i) for i in range(start, start + count)]

    async def latest_checkpoint(self) -> str:
        root = merkle.root_from_leaves(self.leaves)
        return sign(Checkpoint(ORIGIN, len(self.leaves), root), self.signer).decode()

    async def consistency_proof(self, first_size: int, second_size: int) -> list[bytes]:
        self.proofs_asked.append((first_size, second_size))
        return merkle.consistency_proof(first_size, second_size, lambda a, b: self.leaves[a:b])


async def test_first_run_needs_the_verifier_key() -> None:
    with pytest.raises(WitnessError) as caught:
        await observe(FakeLog(3), None)
    assert caught.value.reason == "NO_VERIFIER_KEY"
    assert not caught.value.tampered


async def test_first_run_trusts_then_growth_is_proven(tmp_path: Path) -> None:
    log = FakeLog(5)
    first, state = await observe(log, None, vkey=VKEY)
    assert (first.first_use, first.size) == (True, 5)
    state.save(tmp_path / "w.json")
    loaded = WitnessState.load(tmp_path / "w.json")
    assert loaded == state

    log.grow(6)
    second, state = await observe(log, loaded)  # the key now comes from the state
    assert (second.first_use, second.previous_size, second.size) == (False, 5, 11)
    assert log.proofs_asked == [(5, 11)]
    assert second.proof_hashes > 0

    same, _ = await observe(log, state)  # no growth: same root, no proof needed
    assert same.size == 11
    assert log.proofs_asked == [(5, 11)]


async def test_empty_log_then_growth_needs_no_proof() -> None:
    log = FakeLog(0)
    _, state = await observe(log, None, vkey=VKEY)
    log.grow(3)
    observation, _ = await observe(log, state)
    assert observation.size == 3
    assert log.proofs_asked == []


@pytest.mark.parametrize(
    ("rewrite", "reason"),
    [
        (lambda: FakeLog(4), "LOG_SHRANK"),
        (lambda: FakeLog(6, salt=b"x"), "ROOT_CHANGED"),
        (lambda: FakeLog(9, salt=b"x"), "INCONSISTENT"),
        (lambda: FakeLog(9, signer=OTHER), "BAD_CHECKPOINT"),
    ],
)
async def test_rewritten_logs_are_refused(rewrite: Callable[[], FakeLog], reason: str) -> None:
    _, state = await observe(FakeLog(6), None, vkey=VKEY)
    with pytest.raises(WitnessError) as caught:
        await observe(rewrite(), state)
    assert caught.value.reason == reason
    assert caught.value.tampered


async def test_a_different_key_is_not_accepted_silently() -> None:
    _, state = await observe(FakeLog(2), None, vkey=VKEY)
    with pytest.raises(WitnessError) as caught:
        await observe(FakeLog(2, signer=OTHER), state, vkey=OTHER.verifier().verifier_key())
    assert caught.value.reason == "KEY_MISMATCH"


async def test_edited_state_file_is_refused(tmp_path: Path) -> None:
    _, state = await observe(FakeLog(4), None, vkey=VKEY)
    path = tmp_path / "w.json"
    state.save(path)
    document = json.loads(path.read_text())
    document["size"] = 2  # someone "helps" the log by lowering the witness's memory
    path.write_text(json.dumps(document))
    with pytest.raises(WitnessError) as caught:
        WitnessState.load(path)
    assert caught.value.reason == "BAD_STATE"


async def test_witness_command_keeps_the_old_state_on_failure(tmp_path: Path) -> None:
    path = tmp_path / "witness.json"
    document, code = await auditor.witness(FakeLog(5), path, VKEY)
    assert (code, document["ok"], document["first_use"]) == (0, True, True)
    before = path.read_text()

    document, code = await auditor.witness(FakeLog(7, salt=b"evil"), path, "")
    assert (code, document["ok"], document["reason"]) == (2, False, "INCONSISTENT")
    assert "history was rewritten" in document["problem"]
    assert path.read_text() == before

    honest = FakeLog(5)
    honest.grow(2)
    document, code = await auditor.witness(honest, path, "")
    assert (code, document["previous_size"], document["tree_size"]) == (0, 5, 7)
    assert WitnessState.load(path) is not None


async def test_witness_command_without_a_key_is_a_set_up_error(tmp_path: Path) -> None:
    document, code = await auditor.witness(FakeLog(1), tmp_path / "w.json", "")
    assert (code, document["reason"]) == (1, "NO_VERIFIER_KEY")
    assert not (tmp_path / "w.json").exists()


def test_verifier_keys_whose_base64_holds_a_plus_round_trip() -> None:
    # About half of all keys encode with a "+"; the witness and `audit vkey` depend on these.
    for seed in range(1, 40):
        signer = NoteSigner.from_private_key(
            ORIGIN, Ed25519PrivateKey.from_private_bytes(bytes([seed]) * 32)
        )
        vkey = signer.verifier().verifier_key()
        if vkey.count("+") > 2:
            assert NoteVerifier.from_verifier_key(vkey) == signer.verifier()
            return
    pytest.fail("no key with '+' in its base64 among the seeds")
