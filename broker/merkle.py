"""The RFC 6962 / RFC 9162 Merkle tree behind the audit log.

Hashing (RFC 6962 §2.1): the empty tree is SHA-256(""), a leaf is SHA-256(0x00 || data) and an
interior node is SHA-256(0x01 || left || right), splitting n leaves at the largest power of two
below n.

- :class:`Frontier` holds the right edge of the tree (one hash per set bit of the size), so the
  log appends and computes roots in O(log n) and persists its state without rehashing history.
- :func:`inclusion_proof` and :func:`consistency_proof` build proofs from stored leaf hashes.
- :func:`verify_inclusion` and :func:`verify_consistency` follow RFC 9162 §2.1.3.2 and §2.1.4.2
  and raise :class:`MerkleError` on any proof that does not check out.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "Frontier",
    "LeafReader",
    "MerkleError",
    "consistency_proof",
    "inclusion_proof",
    "leaf_hash",
    "node_hash",
    "root_from_leaves",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()

_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"
# Leaf hashes fetched per call while hashing a subtree: bounds memory for large ranges.
_READ_CHUNK = 1 << 16

LeafReader = Callable[[int, int], Sequence[bytes]]
"""``leaves(start, end)`` returns the stored leaf hashes of entries ``start .. end - 1``."""


class MerkleError(ValueError):
    """A proof, hash or tree size that does not check out."""


def leaf_hash(data: bytes) -> bytes:
    """The RFC 6962 hash of one leaf's data."""
    return hashlib.sha256(_LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """The RFC 6962 hash of an interior node."""
    return hashlib.sha256(_NODE_PREFIX + left + right).digest()


def _check_hash(what: str, value: bytes) -> None:
    if len(value) != HASH_SIZE:
        raise MerkleError(f"{what} is {len(value)} bytes, want {HASH_SIZE}")


def _check_size(what: str, value: int) -> None:
    if value < 0:
        raise MerkleError(f"{what} {value} is negative")


def _split(n: int) -> int:
    """The largest power of two strictly below ``n`` (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


class Frontier:
    """The compact range ``[0, size)``: the roots of the perfect subtrees left to right.

    One hash per set bit of ``size``, largest subtree first. That is all the log has to keep to
    append further leaves and compute the root, and what the database persists.
    """

    __slots__ = ("_hashes", "_size")

    def __init__(self) -> None:
        self._size = 0
        self._hashes: list[bytes] = []

    @classmethod
    def from_hashes(cls, size: int, hashes: Sequence[bytes]) -> Frontier:
        """Restore a frontier persisted as ``(frontier.size, frontier.hashes())``."""
        _check_size("tree size", size)
        if len(hashes) != size.bit_count():
            raise MerkleError(
                f"a frontier of size {size} has {size.bit_count()} hashes, got {len(hashes)}"
            )
        for i, h in enumerate(hashes):
            _check_hash(f"frontier hash {i}", h)
        frontier = cls()
        frontier._size = size
        frontier._hashes = [bytes(h) for h in hashes]
        return frontier

    @property
    def size(self) -> int:
        """The number of leaves appended so far."""
        return self._size

    def hashes(self) -> list[bytes]:
        """The subtree roots, largest first (a copy, for persistence)."""
        return list(self._hashes)

    def copy(self) -> Frontier:
        """An independent copy, to append to tentatively."""
        other = Frontier()
        other._size = self._size
        other._hashes = list(self._hashes)
        return other

    def append(self, leaf: bytes) -> None:
        """Append one leaf hash (amortised O(1) hashes, O(log n) worst case)."""
        self.extend((leaf,))

    def extend(self, leaves: Iterable[bytes]) -> None:
        """Append leaf hashes in order."""
        hashes = self._hashes
        size = self._size
        sha256 = hashlib.sha256
        try:
            for leaf in leaves:
                if len(leaf) != HASH_SIZE:
                    raise MerkleError(f"leaf hash {size} is {len(leaf)} bytes, want {HASH_SIZE}")
                node = leaf
                # Each trailing one bit of the size is a full subtree that the new leaf completes.
                n = size
                while n & 1:
                    node = sha256(_NODE_PREFIX + hashes.pop() + node).digest()
                    n >>= 1
                hashes.append(bytes(node))
                size += 1
        finally:
            self._size = size

    def root(self) -> bytes:
        """The RFC 6962 root of the tree of ``size`` leaves (O(log n))."""
        hashes = self._hashes
        if not hashes:
            return EMPTY_ROOT
        root = hashes[-1]
        for i in range(len(hashes) - 2, -1, -1):
            root = node_hash(hashes[i], root)
        return root

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Frontier):
            return NotImplemented
        return self._size == other._size and self._hashes == other._hashes

    def __repr__(self) -> str:
        return f"Frontier(size={self._size}, root={self.root().hex()})"


def root_from_leaves(leaf_hashes: Iterable[bytes]) -> bytes:
    """The root over ``leaf_hashes`` in one pass, in O(log n) memory."""
    frontier = Frontier()
    frontier.extend(leaf_hashes)
    return frontier.root()


# -- proof generation --------------------------------------------------------------------------


def _subtree_root(leaves: LeafReader, start: int, end: int) -> bytes:
    """MTH(D[start:end]), reading the leaf hashes in bounded chunks."""
    frontier = Frontier()
    pos = start
    while pos < end:
        stop = min(end, pos + _READ_CHUNK)
        chunk = leaves(pos, stop)
        if len(chunk) != stop - pos:
            raise MerkleError(f"asked for leaves {pos}..{stop - 1}, got {len(chunk)} hashes")
        frontier.extend(chunk)
        pos = stop
    return frontier.root()


def inclusion_proof(index: int, size: int, leaves: LeafReader) -> list[bytes]:
    """The audit path for leaf ``index`` in the tree of ``size`` leaves (RFC 9162 §2.1.3.1).

    Hashes each sibling subtree once: O(size) hashes and leaf reads, O(log size) memory
    beyond one chunk of leaves.
    """
    _check_size("leaf index", index)
    if index >= size:
        raise MerkleError(f"leaf index {index} is not below tree size {size}")
    proof: list[bytes] = []
    start, end = 0, size
    while end - start > 1:
        mid = start + _split(end - start)
        if index < mid:
            proof.append(_subtree_root(leaves, mid, end))
            end = mid
        else:
            proof.append(_subtree_root(leaves, start, mid))
            start = mid
    proof.reverse()  # Collected top-down; the RFC lists the path from the leaf up.
    return proof


def consistency_proof(size1: int, size2: int, leaves: LeafReader) -> list[bytes]:
    """The proof that the tree of ``size1`` leaves is a prefix of ``size2`` (RFC 9162 §2.1.4.1).

    ``size1`` must be at least 1: a proof from the empty tree proves nothing and the verifier
    rejects it.
    """
    _check_size("size1", size1)
    if size1 == 0:
        raise MerkleError("a consistency proof from the empty tree proves nothing")
    if size1 > size2:
        raise MerkleError(f"size1 {size1} is greater than size2 {size2}")
    proof: list[bytes] = []
    m, start, end = size1, 0, size2
    complete = True  # SUBPROOF's b: the old tree is still a complete subtree of this one.
    while m != end - start:
        mid = start + _split(end - start)
        if m <= mid - start:
            proof.append(_subtree_root(leaves, mid, end))
            end = mid
        else:
            proof.append(_subtree_root(leaves, start, mid))
            m -= mid - start
            start = mid
            complete = False
    if not complete:
        proof.append(_subtree_root(leaves, start, end))
    proof.reverse()
    return proof


# -- verification ------------------------------------------------------------------------------


def _inclusion_shape(index: int, size: int) -> tuple[int, int]:
    """(inner, border): proof nodes below and on the right border where the path leaves it."""
    inner = (index ^ (size - 1)).bit_length()
    border = (index >> inner).bit_count()
    return inner, border


def verify_inclusion(
    leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Check that ``leaf_hash`` is leaf ``index`` of the tree ``root`` of ``size`` leaves.

    RFC 9162 §2.1.3.2; raises :class:`MerkleError` if it is not.
    """
    _check_size("leaf index", index)
    _check_size("tree size", size)
    if index >= size:
        raise MerkleError(f"leaf index {index} is not below tree size {size}")
    _check_hash("leaf hash", leaf_hash)
    _check_hash("root", root)
    for i, p in enumerate(proof):
        _check_hash(f"proof hash {i}", p)
    inner, border = _inclusion_shape(index, size)
    if len(proof) != inner + border:
        raise MerkleError(f"inclusion proof has {len(proof)} hashes, want {inner + border}")

    fn, sn = index, size - 1
    computed = leaf_hash
    for p in proof:
        if sn == 0:
            raise MerkleError("inclusion proof is too long")
        if fn & 1 or fn == sn:
            computed = node_hash(p, computed)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            computed = node_hash(computed, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise MerkleError("inclusion proof is too short")
    if computed != root:
        raise MerkleError("inclusion proof does not lead to the root")


def verify_consistency(
    size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes
) -> None:
    """Check that the tree ``root1`` of ``size1`` leaves is a prefix of ``root2`` of ``size2``.

    RFC 9162 §2.1.4.2; raises :class:`MerkleError` if it is not. A proof from ``size1 == 0``
    is always rejected. For equal sizes the proof must be empty and the roots equal; no hashing
    takes place then, so the roots' lengths are not checked (as the reference vectors expect).
    """
    _check_size("size1", size1)
    _check_size("size2", size2)
    if size1 > size2:
        raise MerkleError(f"size1 {size1} is greater than size2 {size2}")
    if size1 == 0:
        raise MerkleError("a consistency proof from the empty tree proves nothing")
    if size1 == size2:
        if proof:
            raise MerkleError("sizes are equal but the consistency proof is not empty")
        if root1 != root2:
            raise MerkleError("sizes are equal but the roots differ")
        return
    _check_hash("root1", root1)
    _check_hash("root2", root2)
    for i, p in enumerate(proof):
        _check_hash(f"proof hash {i}", p)

    inner, border = _inclusion_shape(size1 - 1, size2)
    shift = (size1 & -size1).bit_length() - 1  # trailing zero bits of size1
    # The proof starts with the old tree's largest complete right subtree, unless the whole
    # old tree is one complete subtree, whose root is root1 itself.
    seeded = size1 == 1 << shift
    want = inner - shift + border + (0 if seeded else 1)
    if len(proof) != want:
        raise MerkleError(f"consistency proof has {len(proof)} hashes, want {want}")

    path = [root1, *proof] if seeded else list(proof)
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise MerkleError("consistency proof is too long")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise MerkleError("consistency proof is too short")
    if fr != root1:
        raise MerkleError("consistency proof does not lead to root1")
    if sr != root2:
        raise MerkleError("consistency proof does not lead to root2")
