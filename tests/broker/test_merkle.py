"""The RFC 6962 tree against the published vectors and a from-the-RFC reference."""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from broker import merkle
from broker.merkle import MerkleError

# The shared folder sits beside the repository folder.
TESTDATA = Path(__file__).resolve().parents[3] / "shared" / "testdata" / "rfc6962"


def _vector_params(kind: str) -> list[Any]:
    files = sorted((TESTDATA / kind).rglob("*.json"))
    if not files:
        # An empty parameter list would be skipped silently; missing vectors must fail.
        return [pytest.param(TESTDATA / kind, id=f"{kind}-vectors-missing")]
    return [pytest.param(f, id=f.relative_to(TESTDATA).as_posix()) for f in files]


def _load(path: Path) -> dict[str, Any]:
    assert path.is_file(), f"RFC 6962 test vectors are missing: {path}"
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def _b64(value: str) -> bytes:
    return base64.b64decode(value)


def _proof(value: list[str] | None) -> list[bytes]:
    return [_b64(p) for p in value or []]


# -- a reference written straight from RFC 9162 §2.1, recursive and slow ------------------------


def _k(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def _mth(d: Sequence[bytes]) -> bytes:
    if not d:
        return merkle.EMPTY_ROOT
    if len(d) == 1:
        return d[0]
    k = _k(len(d))
    return merkle.node_hash(_mth(d[:k]), _mth(d[k:]))


def _path(m: int, d: Sequence[bytes]) -> list[bytes]:
    if len(d) == 1:
        return []
    k = _k(len(d))
    if m < k:
        return [*_path(m, d[:k]), _mth(d[k:])]
    return [*_path(m - k, d[k:]), _mth(d[:k])]


def _subproof(m: int, d: Sequence[bytes], b: bool) -> list[bytes]:
    if m == len(d):
        return [] if b else [_mth(d)]
    k = _k(len(d))
    if m <= k:
        return [*_subproof(m, d[:k], b), _mth(d[k:])]
    return [*_subproof(m - k, d[k:], False), _mth(d[:k])]


MAX_BRUTE = 70
LEAVES = [merkle.leaf_hash(i.to_bytes(4, "big")) for i in range(MAX_BRUTE)]
ROOTS = [_mth(LEAVES[:n]) for n in range(MAX_BRUTE + 1)]


def _reader(leaves: Sequence[bytes]) -> merkle.LeafReader:
    def read(start: int, end: int) -> Sequence[bytes]:
        assert 0 <= start < end <= len(leaves)
        return leaves[start:end]

    return read


# -- published vectors ---------------------------------------------------------------------------


@pytest.mark.parametrize("path", _vector_params("inclusion"))
def test_inclusion_vector(path: Path) -> None:
    v = _load(path)
    args = (_b64(v["leafHash"]), v["leafIdx"], v["treeSize"], _proof(v["proof"]), _b64(v["root"]))
    if v["wantErr"]:
        with pytest.raises(MerkleError):
            merkle.verify_inclusion(*args)
    else:
        merkle.verify_inclusion(*args)


@pytest.mark.parametrize("path", _vector_params("consistency"))
def test_consistency_vector(path: Path) -> None:
    v = _load(path)
    args = (v["size1"], v["size2"], _proof(v["proof"]), _b64(v["root1"]), _b64(v["root2"]))
    if v["wantErr"]:
        with pytest.raises(MerkleError):
            merkle.verify_consistency(*args)
    else:
        merkle.verify_consistency(*args)


def test_vector_corpus_is_complete() -> None:
    for kind in ("inclusion", "consistency"):
        vectors = [_load(f) for f in (TESTDATA / kind).rglob("*.json")]
        accepted = sum(not v["wantErr"] for v in vectors)
        assert len(vectors) >= 98, f"{kind}: only {len(vectors)} vectors under {TESTDATA}"
        assert accepted >= 6
        assert len(vectors) - accepted >= 90


def _roots_json() -> dict[str, Any]:
    return _load(TESTDATA / "roots.json")


def test_reference_roots_with_frontier_and_root_from_leaves() -> None:
    ref = _roots_json()
    leaves = [merkle.leaf_hash(bytes.fromhex(x)) for x in ref["leaf_inputs_hex"]]
    roots = {int(n): bytes.fromhex(h) for n, h in ref["root_hashes_hex_by_tree_size"].items()}
    assert sorted(roots) == list(range(len(leaves) + 1))
    frontier = merkle.Frontier()
    assert frontier.root() == roots[0] == merkle.EMPTY_ROOT
    for n, leaf in enumerate(leaves, start=1):
        frontier.append(leaf)
        assert frontier.size == n
        assert frontier.root() == roots[n]
    for n, root in roots.items():
        assert merkle.root_from_leaves(leaves[:n]) == root
        assert merkle.root_from_leaves(iter(leaves[:n])) == root


def test_reference_single_hashes() -> None:
    ref = _roots_json()
    assert merkle.leaf_hash(b"L123456").hex() == ref["leaf_hash_of_L123456_hex"]
    assert merkle.node_hash(b"N123", b"N456").hex() == ref["node_hash_of_N123_N456_hex"]


# -- frontier -------------------------------------------------------------------------------------


def test_frontier_matches_reference_at_every_size() -> None:
    frontier = merkle.Frontier()
    for n in range(MAX_BRUTE + 1):
        assert frontier.size == n
        assert len(frontier.hashes()) == n.bit_count()
        assert frontier.root() == ROOTS[n]
        if n < MAX_BRUTE:
            frontier.append(LEAVES[n])


@pytest.mark.parametrize("cut", range(MAX_BRUTE + 1))
def test_frontier_persistence_round_trip_continues(cut: int) -> None:
    frontier = merkle.Frontier()
    frontier.extend(LEAVES[:cut])
    stored = (frontier.size, [h.hex() for h in frontier.hashes()])

    restored = merkle.Frontier.from_hashes(stored[0], [bytes.fromhex(h) for h in stored[1]])
    assert restored == frontier
    assert restored.root() == ROOTS[cut]
    for n in range(cut, MAX_BRUTE):
        restored.append(LEAVES[n])
        assert restored.root() == ROOTS[n + 1]
    assert restored.size == MAX_BRUTE


def test_frontier_copy_is_independent() -> None:
    frontier = merkle.Frontier()
    frontier.extend(LEAVES[:5])
    copy = frontier.copy()
    copy.append(LEAVES[5])
    assert frontier.size == 5
    assert frontier.root() == ROOTS[5]
    assert copy.root() == ROOTS[6]


@pytest.mark.parametrize(
    ("size", "hashes"),
    [
        (-1, []),
        (1, []),
        (0, [LEAVES[0]]),
        (3, [LEAVES[0]]),
        (4, [LEAVES[0], LEAVES[1]]),
        (1, [LEAVES[0][:31]]),
        (2, [LEAVES[0] + b"\x00"]),
    ],
)
def test_frontier_from_hashes_rejects_bad_state(size: int, hashes: list[bytes]) -> None:
    with pytest.raises(MerkleError):
        merkle.Frontier.from_hashes(size, hashes)


def test_frontier_rejects_bad_leaf_and_stays_consistent() -> None:
    frontier = merkle.Frontier()
    with pytest.raises(MerkleError):
        frontier.extend([LEAVES[0], LEAVES[1], LEAVES[2], b"short"])
    assert frontier.size == 3
    assert frontier.root() == ROOTS[3]
    with pytest.raises(MerkleError):
        merkle.root_from_leaves([b""])


# -- generated proofs, brute force ----------------------------------------------------------------


@pytest.mark.parametrize("size", range(1, MAX_BRUTE + 1))
def test_inclusion_proofs_for_every_index(size: int) -> None:
    read = _reader(LEAVES[:size])
    for index in range(size):
        proof = merkle.inclusion_proof(index, size, read)
        assert proof == _path(index, LEAVES[:size])
        merkle.verify_inclusion(LEAVES[index], index, size, proof, ROOTS[size])
        with pytest.raises(MerkleError):
            merkle.verify_inclusion(LEAVES[index], index, size, proof, ROOTS[size - 1])
        other = LEAVES[(index + 1) % size]
        if other != LEAVES[index]:
            with pytest.raises(MerkleError):
                merkle.verify_inclusion(other, index, size, proof, ROOTS[size])


@pytest.mark.parametrize("size2", range(1, MAX_BRUTE + 1))
def test_consistency_proofs_for_every_pair(size2: int) -> None:
    read = _reader(LEAVES[:size2])
    for size1 in range(1, size2 + 1):
        proof = merkle.consistency_proof(size1, size2, read)
        assert proof == _subproof(size1, LEAVES[:size2], True)
        merkle.verify_consistency(size1, size2, proof, ROOTS[size1], ROOTS[size2])
        if size1 < size2:
            with pytest.raises(MerkleError):
                merkle.verify_consistency(size1, size2, proof, ROOTS[size1 + 1], ROOTS[size2])
            with pytest.raises(MerkleError):
                merkle.verify_consistency(size1, size2, proof, ROOTS[size1], ROOTS[size2 - 1])


def _mutations(proof: list[bytes]) -> list[list[bytes]]:
    """Every single-bit flip, each removal and insertion, and both ends padded."""
    out: list[list[bytes]] = []
    for i, h in enumerate(proof):
        for bit in (0, 7, 255):
            flipped = bytearray(h)
            flipped[bit // 8] ^= 1 << (bit % 8)
            out.append([*proof[:i], bytes(flipped), *proof[i + 1 :]])
        out.append(proof[:i] + proof[i + 1 :])
        out.append([*proof[:i], h, *proof[i:]])
    out.append([merkle.EMPTY_ROOT, *proof])
    out.append([*proof, merkle.EMPTY_ROOT])
    return out


@pytest.mark.parametrize("size", range(1, 20))
def test_mutated_inclusion_proofs_are_rejected(size: int) -> None:
    read = _reader(LEAVES[:size])
    for index in range(size):
        proof = merkle.inclusion_proof(index, size, read)
        for bad in _mutations(proof):
            with pytest.raises(MerkleError):
                merkle.verify_inclusion(LEAVES[index], index, size, bad, ROOTS[size])
        # Not size + 1: a proof binds the size only through its shape, and e.g. 3 and 4
        # share it for leaf 0 (the signed checkpoint binds the size).
        for bad_index, bad_size in [(index ^ 1, size), (index, size * 2)]:
            if (bad_index, bad_size) == (index, size) or bad_index >= bad_size:
                continue
            with pytest.raises(MerkleError):
                merkle.verify_inclusion(LEAVES[index], bad_index, bad_size, proof, ROOTS[size])


@pytest.mark.parametrize("size2", range(2, 20))
def test_mutated_consistency_proofs_are_rejected(size2: int) -> None:
    read = _reader(LEAVES[:size2])
    for size1 in range(1, size2):
        proof = merkle.consistency_proof(size1, size2, read)
        for bad in _mutations(proof):
            with pytest.raises(MerkleError):
                merkle.verify_consistency(size1, size2, bad, ROOTS[size1], ROOTS[size2])
        with pytest.raises(MerkleError):
            merkle.verify_consistency(size1, size2, [], ROOTS[size1], ROOTS[size2])
        with pytest.raises(MerkleError):
            merkle.verify_consistency(size2, size1, proof, ROOTS[size2], ROOTS[size1])


def test_proofs_read_leaves_in_bounded_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(merkle, "_READ_CHUNK", 3)
    calls: list[tuple[int, int]] = []

    def read(start: int, end: int) -> Sequence[bytes]:
        calls.append((start, end))
        return LEAVES[start:end]

    for size in (1, 2, 7, 33, MAX_BRUTE):
        for index in range(size):
            proof = merkle.inclusion_proof(index, size, read)
            merkle.verify_inclusion(LEAVES[index], index, size, proof, ROOTS[size])
        for size1 in range(1, size + 1):
            proof = merkle.consistency_proof(size1, size, read)
            merkle.verify_consistency(size1, size, proof, ROOTS[size1], ROOTS[size])
    assert calls
    assert all(end - start <= 3 for start, end in calls)


def test_one_proof_reads_each_leaf_at_most_once() -> None:
    size = MAX_BRUTE
    read_count = 0

    def read(start: int, end: int) -> Sequence[bytes]:
        nonlocal read_count
        read_count += end - start
        return LEAVES[start:end]

    merkle.inclusion_proof(37, size, read)
    assert read_count == size - 1
    read_count = 0
    merkle.consistency_proof(37, size, read)
    assert read_count <= size


@pytest.mark.parametrize(("index", "size"), [(0, 0), (1, 1), (5, 3), (-1, 3)])
def test_inclusion_proof_rejects_index_out_of_range(index: int, size: int) -> None:
    with pytest.raises(MerkleError):
        merkle.inclusion_proof(index, size, _reader(LEAVES))


@pytest.mark.parametrize(("size1", "size2"), [(0, 0), (0, 5), (6, 5), (-1, 3)])
def test_consistency_proof_rejects_bad_sizes(size1: int, size2: int) -> None:
    with pytest.raises(MerkleError):
        merkle.consistency_proof(size1, size2, _reader(LEAVES))


def test_proofs_reject_a_short_read() -> None:
    def short(start: int, end: int) -> Sequence[bytes]:
        return LEAVES[start : end - 1]

    with pytest.raises(MerkleError):
        merkle.inclusion_proof(0, 8, short)
    with pytest.raises(MerkleError):
        merkle.consistency_proof(3, 8, short)


# -- verifier input checks ------------------------------------------------------------------------


def test_verify_inclusion_checks_hash_sizes() -> None:
    proof = merkle.inclusion_proof(2, 5, _reader(LEAVES))
    merkle.verify_inclusion(LEAVES[2], 2, 5, proof, ROOTS[5])
    with pytest.raises(MerkleError, match="leaf hash"):
        merkle.verify_inclusion(LEAVES[2][:31], 2, 5, proof, ROOTS[5])
    with pytest.raises(MerkleError, match="root"):
        merkle.verify_inclusion(LEAVES[2], 2, 5, proof, ROOTS[5] + b"\x00")
    with pytest.raises(MerkleError, match="proof hash 1"):
        merkle.verify_inclusion(LEAVES[2], 2, 5, [proof[0], proof[1][:16], *proof[2:]], ROOTS[5])


def test_verify_consistency_checks_hash_sizes() -> None:
    proof = merkle.consistency_proof(3, 7, _reader(LEAVES))
    merkle.verify_consistency(3, 7, proof, ROOTS[3], ROOTS[7])
    with pytest.raises(MerkleError, match="root1"):
        merkle.verify_consistency(3, 7, proof, ROOTS[3][:-1], ROOTS[7])
    with pytest.raises(MerkleError, match="root2"):
        merkle.verify_consistency(3, 7, proof, ROOTS[3], ROOTS[7] + b"\x00")
    with pytest.raises(MerkleError, match="proof hash 0"):
        merkle.verify_consistency(3, 7, [b"", *proof[1:]], ROOTS[3], ROOTS[7])


def test_verify_consistency_from_empty_tree_is_rejected() -> None:
    with pytest.raises(MerkleError, match="empty tree"):
        merkle.verify_consistency(0, 0, [], merkle.EMPTY_ROOT, merkle.EMPTY_ROOT)
    with pytest.raises(MerkleError, match="empty tree"):
        merkle.verify_consistency(0, 3, [], merkle.EMPTY_ROOT, ROOTS[3])
