"""Signed checkpoints of the audit log: C2SP tlog-checkpoint bodies in C2SP signed notes.

A checkpoint commits to the log's origin, tree size and RFC 6962 root hash::

    tillit.example/audit
    1234
    <base64 root hash>

    — tillit.example/audit <base64(4-byte key ID || Ed25519 signature)>

The signature covers the note text (the body, final newline included). The key ID is the first
four bytes of SHA-256(key name || 0x0A || 0x01 || public key), 0x01 being Ed25519's signature
type, and a verifier key is written ``<name>+<hex key ID>+<base64(0x01 || public key)>``
(https://c2sp.org/signed-note, https://c2sp.org/tlog-checkpoint).

Parsing is strict: anything that is not exactly such a note raises :class:`CheckpointError`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

__all__ = [
    "ED25519_TYPE",
    "MAX_NOTE_SIZE",
    "MAX_SIGNATURES",
    "ROOT_SIZE",
    "Checkpoint",
    "CheckpointError",
    "NoteSigner",
    "NoteVerifier",
    "ed25519_key_id",
    "open_checkpoint",
    "open_note",
    "sign",
    "sign_note",
]

ED25519_TYPE = 0x01
ROOT_SIZE = 32
# The spec asks verifiers to cap signatures and accept at least 16; Go's note package caps at 100.
MAX_SIGNATURES = 100
MAX_NOTE_SIZE = 1 << 20

_SIG_PREFIX = "\u2014 "  # em dash, space
_MAX_TREE_SIZE = (1 << 64) - 1
_TREE_SIZE_RE = re.compile(r"0|[1-9][0-9]*")
_KEY_ID_RE = re.compile(r"[0-9a-f]{8}")


class CheckpointError(ValueError):
    """A checkpoint or signed note that is malformed, unsigned or wrongly signed."""


def _b64decode(text: str, what: str) -> bytes:
    """Strict standard base64: right alphabet, padding and canonical trailing bits."""
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise CheckpointError(f"{what} is not valid base64") from exc
    if base64.b64encode(data).decode("ascii") != text:
        raise CheckpointError(f"{what} is not canonical base64")
    return data


def _b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _has_control(text: str) -> bool:
    return any(ord(ch) < 0x20 for ch in text)


def _check_key_name(name: str) -> None:
    # signed-note: key names are non-empty, without Unicode spaces or "+".
    if not name or "+" in name or any(ch.isspace() for ch in name) or _has_control(name):
        raise CheckpointError(f"invalid key name {name!r}")


def _raw_public_key(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def ed25519_key_id(name: str, public_key: bytes) -> bytes:
    """The 4-byte signed-note key ID of an Ed25519 key: SHA-256(name\\n 0x01 key)[:4]."""
    data = name.encode("utf-8") + b"\n" + bytes([ED25519_TYPE]) + public_key
    return hashlib.sha256(data).digest()[:4]


class NoteVerifier:
    """A trusted Ed25519 note key: its name, key ID and public key."""

    __slots__ = ("_key_id", "_name", "_public_key", "_raw")

    def __init__(self, name: str, public_key: Ed25519PublicKey) -> None:
        _check_key_name(name)
        self._name = name
        self._public_key = public_key
        self._raw = _raw_public_key(public_key)
        self._key_id = ed25519_key_id(name, self._raw)

    @classmethod
    def from_verifier_key(cls, vkey: str) -> NoteVerifier:
        """Parse a verifier key ``<name>+<hex key ID>+<base64(0x01 || public key)>``."""
        # Names hold no "+", but the base64 key may: split off name and ID only (as Go does).
        parts = vkey.split("+", 2)
        if len(parts) != 3:
            raise CheckpointError("a verifier key is <name>+<key ID>+<key>")
        name, key_id_hex, key_b64 = parts
        _check_key_name(name)
        if not _KEY_ID_RE.fullmatch(key_id_hex):
            raise CheckpointError("a verifier key ID is 8 lowercase hex digits")
        key = _b64decode(key_b64, "verifier key")
        if len(key) != 1 + 32 or key[0] != ED25519_TYPE:
            raise CheckpointError("the verifier key is not an Ed25519 key")
        if ed25519_key_id(name, key[1:]).hex() != key_id_hex:
            raise CheckpointError("the verifier key ID does not match the key")
        return cls(name, Ed25519PublicKey.from_public_bytes(key[1:]))

    def verifier_key(self) -> str:
        """This key as ``<name>+<hex key ID>+<base64(0x01 || public key)>``."""
        encoded = _b64encode(bytes([ED25519_TYPE]) + self._raw)
        return f"{self._name}+{self._key_id.hex()}+{encoded}"

    @property
    def name(self) -> str:
        return self._name

    @property
    def key_id(self) -> bytes:
        return self._key_id

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self._public_key

    def verify(self, text: bytes, signature: bytes) -> bool:
        """Whether ``signature`` is this key's Ed25519 signature of ``text``."""
        try:
            self._public_key.verify(signature, text)
        except InvalidSignature:
            return False
        return True

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, NoteVerifier):
            return NotImplemented
        return self._name == other._name and self._raw == other._raw

    def __hash__(self) -> int:
        return hash((self._name, self._raw))

    def __repr__(self) -> str:
        return f"NoteVerifier({self.verifier_key()!r})"


class NoteSigner:
    """An Ed25519 note signing key and its name."""

    __slots__ = ("_key", "_verifier")

    def __init__(self, name: str, private_key: Ed25519PrivateKey) -> None:
        self._key = private_key
        self._verifier = NoteVerifier(name, private_key.public_key())

    @classmethod
    def from_private_key(cls, name: str, private_key: Ed25519PrivateKey) -> NoteSigner:
        """A signer named ``name`` (for a log, its origin) using ``private_key``."""
        return cls(name, private_key)

    @property
    def name(self) -> str:
        return self._verifier.name

    @property
    def key_id(self) -> bytes:
        return self._verifier.key_id

    def verifier(self) -> NoteVerifier:
        """The matching verifier, to publish as :meth:`NoteVerifier.verifier_key`."""
        return self._verifier

    def sign(self, text: bytes) -> bytes:
        """The raw Ed25519 signature of ``text``."""
        return self._key.sign(text)

    def __repr__(self) -> str:
        return f"NoteSigner(name={self.name!r}, key_id={self.key_id.hex()})"


# -- signed notes ------------------------------------------------------------------------------


def _check_note_chars(text: str, what: str) -> None:
    # signed-note: no ASCII control characters other than newline.
    if any(ord(ch) < 0x20 and ch != "\n" for ch in text):
        raise CheckpointError(f"{what} contains a control character")


def sign_note(text: bytes, signer: NoteSigner) -> bytes:
    """The signed note of ``text`` (which must end in a newline) with one signature."""
    try:
        decoded = text.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CheckpointError("note text is not UTF-8") from exc
    if not decoded.endswith("\n"):
        raise CheckpointError("note text does not end in a newline")
    _check_note_chars(decoded, "note text")
    sig = _b64encode(signer.key_id + signer.sign(text))
    return text + f"\n{_SIG_PREFIX}{signer.name} {sig}\n".encode()


def open_note(note: bytes, verifier: NoteVerifier) -> bytes:
    """Verify ``note`` and return its text (final newline included).

    Signatures by other keys are ignored, as the spec requires; every signature by
    ``verifier``'s key must verify and there must be at least one.
    """
    if len(note) > MAX_NOTE_SIZE:
        raise CheckpointError("note is too large")
    try:
        decoded = note.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CheckpointError("note is not UTF-8") from exc
    _check_note_chars(decoded, "note")
    split = decoded.rfind("\n\n")
    if split < 0:
        raise CheckpointError("note has no blank line before its signatures")
    text, sigs = decoded[: split + 1], decoded[split + 2 :]
    if not sigs.endswith("\n"):
        raise CheckpointError("note does not end in a signature line")
    lines = sigs[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise CheckpointError("note has too many signatures")
    text_bytes = text.encode("utf-8")
    verified = False
    for line in lines:
        if not line.startswith(_SIG_PREFIX):
            raise CheckpointError("malformed signature line")
        name, sep, sig_b64 = line[len(_SIG_PREFIX) :].partition(" ")
        if not sep:
            raise CheckpointError("malformed signature line")
        _check_key_name(name)
        blob = _b64decode(sig_b64, "signature")
        if len(blob) < 5:
            raise CheckpointError("signature is too short")
        key_id, signature = blob[:4], blob[4:]
        if name != verifier.name or key_id != verifier.key_id:
            continue
        if not verifier.verify(text_bytes, signature):
            raise CheckpointError(f"invalid signature by {name}")
        verified = True
    if not verified:
        raise CheckpointError(f"note is not signed by {verifier.name}+{verifier.key_id.hex()}")
    return text_bytes


# -- checkpoints -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A log's signed tree head: origin, tree size, RFC 6962 root and extension lines."""

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.origin or _has_control(self.origin):
            raise CheckpointError("origin must be a non-empty line")
        if isinstance(self.size, bool) or not 0 <= self.size <= _MAX_TREE_SIZE:
            raise CheckpointError(f"tree size {self.size} is out of range")
        if len(self.root) != ROOT_SIZE:
            raise CheckpointError(f"root hash is {len(self.root)} bytes, want {ROOT_SIZE}")
        object.__setattr__(self, "root", bytes(self.root))
        object.__setattr__(self, "extensions", tuple(self.extensions))
        for ext in self.extensions:
            if not ext or _has_control(ext):
                raise CheckpointError("extension lines must be non-empty lines")

    def body(self) -> bytes:
        """The note text: origin, size, base64 root and extension lines, each newline-ended."""
        lines = [self.origin, str(self.size), _b64encode(self.root), *self.extensions]
        return "".join(line + "\n" for line in lines).encode("utf-8")


def _parse_body(text: bytes) -> Checkpoint:
    lines = text.decode("utf-8").split("\n")
    # The text ends in a newline, so the split leaves one empty string at the end.
    if len(lines) < 4 or lines[-1] != "":
        raise CheckpointError("a checkpoint has at least three lines")
    origin, size_line, root_line, *extensions = lines[:-1]
    if not _TREE_SIZE_RE.fullmatch(size_line):
        raise CheckpointError("tree size is not a decimal number without leading zeros")
    size = int(size_line)
    if size > _MAX_TREE_SIZE:
        raise CheckpointError("tree size is out of range")
    root = _b64decode(root_line, "root hash")
    return Checkpoint(origin, size, root, tuple(extensions))


def sign(checkpoint: Checkpoint, signer: NoteSigner) -> bytes:
    """The signed note of ``checkpoint``."""
    return sign_note(checkpoint.body(), signer)


def open_checkpoint(
    note: bytes, verifier: NoteVerifier, *, origin: str | None = None
) -> Checkpoint:
    """Verify a signed checkpoint note and parse it strictly.

    With ``origin`` given, the checkpoint must also be for that log.
    """
    checkpoint = _parse_body(open_note(note, verifier))
    if origin is not None and checkpoint.origin != origin:
        raise CheckpointError(f"checkpoint is for {checkpoint.origin!r}, not {origin!r}")
    return checkpoint
