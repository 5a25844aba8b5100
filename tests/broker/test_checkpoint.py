"""Signed checkpoints: the C2SP signed-note and tlog-checkpoint formats, strictly."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from broker import merkle
from broker.checkpoint import (
    Checkpoint,
    CheckpointError,
    NoteSigner,
    NoteVerifier,
    ed25519_key_id,
    open_checkpoint,
    open_note,
    sign,
    sign_note,
)

# The reference example of golang.org/x/mod/sumdb/note (note_test.go).
GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_TEXT = (
    b"If you think cryptography is the answer to your problem,\n"
    b"then you don't know what your problem is.\n"
)
GO_SIGNATURE = (
    "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM="
)
GO_NOTE = GO_TEXT + f"\n\u2014 PeterNeumann {GO_SIGNATURE}\n".encode()

ORIGIN = "tillit.example/audit"
ROOT = merkle.root_from_leaves([merkle.leaf_hash(b"entry %d" % i) for i in range(5)])


def _go_signer() -> NoteSigner:
    key = base64.b64decode(GO_SKEY.split("+", 4)[4])  # the base64 may hold "+"
    assert key[0] == 0x01
    return NoteSigner.from_private_key(
        "PeterNeumann", Ed25519PrivateKey.from_private_bytes(key[1:])
    )


def _key(seed: int) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(bytes([seed]) * 32)


SIGNER = NoteSigner.from_private_key(ORIGIN, _key(1))
VERIFIER = NoteVerifier(ORIGIN, _key(1).public_key())
CHECKPOINT = Checkpoint(ORIGIN, 5, ROOT)
NOTE = sign(CHECKPOINT, SIGNER)


# -- signed notes: the reference vector --------------------------------------------------------


def test_key_id_matches_reference_vector() -> None:
    verifier = NoteVerifier.from_verifier_key(GO_VKEY)
    assert verifier.name == "PeterNeumann"
    assert verifier.key_id.hex() == "c74f20a3"
    raw = base64.b64decode(GO_VKEY.split("+")[2])[1:]
    assert ed25519_key_id("PeterNeumann", raw) == bytes.fromhex("c74f20a3")
    assert _go_signer().key_id == verifier.key_id
    assert _go_signer().verifier() == verifier


def test_sign_note_reproduces_reference_note() -> None:
    assert sign_note(GO_TEXT, _go_signer()) == GO_NOTE


def test_open_note_verifies_reference_note() -> None:
    assert open_note(GO_NOTE, NoteVerifier.from_verifier_key(GO_VKEY)) == GO_TEXT
    with pytest.raises(CheckpointError):
        open_note(GO_NOTE.replace(b"cryptography", b"cryptographY"), _go_signer().verifier())


# -- verifier keys ---------------------------------------------------------------------------------


def test_verifier_key_round_trip() -> None:
    assert NoteVerifier.from_verifier_key(GO_VKEY).verifier_key() == GO_VKEY
    vkey = VERIFIER.verifier_key()
    name, key_id, key = vkey.split("+")
    assert name == ORIGIN
    assert key_id == VERIFIER.key_id.hex()
    assert base64.b64decode(key)[0] == 0x01
    parsed = NoteVerifier.from_verifier_key(vkey)
    assert parsed == VERIFIER
    assert parsed.verifier_key() == vkey
    assert open_checkpoint(NOTE, parsed) == CHECKPOINT
    assert SIGNER.verifier() == VERIFIER


def _manglings(vkey: str) -> list[str]:
    """Every proper substring and every single-character increment (as Go's tests do)."""
    out = {vkey[i:j] for i in range(len(vkey)) for j in range(i + 1, len(vkey) + 1)}
    out |= {vkey[:i] + chr(ord(c) + 1) + vkey[i + 1 :] for i, c in enumerate(vkey)}
    out.discard(vkey)
    return sorted(out)


def test_mangled_verifier_keys_are_rejected() -> None:
    for bad in _manglings(GO_VKEY):
        with pytest.raises(CheckpointError):
            NoteVerifier.from_verifier_key(bad)


@pytest.mark.parametrize(
    "vkey",
    [
        "",
        "PeterNeumann",
        "PeterNeumann+c74f20a3",
        GO_VKEY + "+",
        GO_VKEY.replace("c74f20a3", "C74F20A3"),
        GO_VKEY.replace("c74f20a3", "cc469956"),
        GO_VKEY.replace("PeterNeumann", "Peter Neumann"),
        "+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        # Same key, signature type 0x02.
        "PeterNeumann+c74f20a3+Alpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        # Base64 without padding, and with a character outside the alphabet.
        "x+00000000+AXpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWAA",
        "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10T_",
    ],
)
def test_malformed_verifier_keys_are_rejected(vkey: str) -> None:
    with pytest.raises(CheckpointError):
        NoteVerifier.from_verifier_key(vkey)


@pytest.mark.parametrize("name", ["", "a+b", "a b", "a\u00a0b", "a\tb", "a\nb"])
def test_invalid_key_names_are_rejected(name: str) -> None:
    with pytest.raises(CheckpointError):
        NoteVerifier(name, _key(1).public_key())
    with pytest.raises(CheckpointError):
        NoteSigner.from_private_key(name, _key(1))


# -- checkpoints: round trip -------------------------------------------------------------------


def test_checkpoint_body_format() -> None:
    root_b64 = base64.b64encode(ROOT).decode()
    assert CHECKPOINT.body() == f"{ORIGIN}\n5\n{root_b64}\n".encode()
    lines = NOTE.decode().split("\n")
    assert lines[:4] == [ORIGIN, "5", root_b64, ""]
    assert lines[4].startswith(f"\u2014 {ORIGIN} ")
    sig = base64.b64decode(lines[4].split(" ")[2])
    assert sig[:4] == VERIFIER.key_id
    assert len(sig) == 4 + 64
    assert lines[5:] == [""]


@pytest.mark.parametrize(
    "checkpoint",
    [
        CHECKPOINT,
        Checkpoint(ORIGIN, 0, merkle.EMPTY_ROOT),
        Checkpoint(ORIGIN, 2**64 - 1, ROOT),
        Checkpoint("example.com/behind the sofa", 1, ROOT),
        Checkpoint(ORIGIN, 7, ROOT, ("ext one", "\u00e9xt two")),
    ],
)
def test_checkpoint_round_trip(checkpoint: Checkpoint) -> None:
    note = sign(checkpoint, SIGNER)
    assert open_checkpoint(note, VERIFIER) == checkpoint
    assert open_checkpoint(note, VERIFIER, origin=checkpoint.origin) == checkpoint


def test_checkpoint_origin_must_match_when_given() -> None:
    with pytest.raises(CheckpointError, match=r"not 'other\.example/log'"):
        open_checkpoint(NOTE, VERIFIER, origin="other.example/log")


def test_reference_checkpoint_parses_with_its_extension_free_body() -> None:
    signer = NoteSigner.from_private_key("example.com/behind-the-sofa", _key(9))
    body = b"example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
    checkpoint = open_checkpoint(sign_note(body, signer), signer.verifier())
    assert checkpoint.size == 20852163
    assert checkpoint.root.hex().startswith("0ac5186a91863e8e")
    assert checkpoint.body() == body


# -- tampering and wrong keys ------------------------------------------------------------------


def _replace_line(note: bytes, index: int, line: str) -> bytes:
    lines = note.decode().split("\n")
    lines[index] = line
    return "\n".join(lines).encode()


def _flip_last_sig_char(line: str) -> str:
    head, b64 = line.rsplit(" ", 1)
    blob = bytearray(base64.b64decode(b64))
    blob[-1] ^= 1
    return f"{head} {base64.b64encode(bytes(blob)).decode()}"


def _tampered_notes() -> list[object]:
    lines = NOTE.decode().split("\n")
    other_root = base64.b64encode(merkle.EMPTY_ROOT).decode()
    sig_blob = lines[4].split(" ")[2]
    other_id = base64.b64encode(b"\x00\x00\x00\x00" + base64.b64decode(sig_blob)[4:]).decode()
    cases = {
        "origin": _replace_line(NOTE, 0, ORIGIN + "x"),
        "size": _replace_line(NOTE, 1, "6"),
        "root": _replace_line(NOTE, 2, other_root),
        "signature": _replace_line(NOTE, 4, _flip_last_sig_char(lines[4])),
        "key-name": _replace_line(NOTE, 4, lines[4].replace(ORIGIN, ORIGIN + "x")),
        "key-id": _replace_line(NOTE, 4, f"\u2014 {ORIGIN} {other_id}"),
        "added-extension": NOTE.replace(b"\n\n", b"\nextension\n\n"),
        "dropped-signature": NOTE[: NOTE.index(b"\n\n") + 2],
    }
    return [pytest.param(note, id=name) for name, note in cases.items()]


@pytest.mark.parametrize("note", _tampered_notes())
def test_tampered_checkpoint_is_rejected(note: bytes) -> None:
    assert note != NOTE
    with pytest.raises(CheckpointError):
        open_checkpoint(note, VERIFIER)


def test_wrong_key_is_rejected() -> None:
    with pytest.raises(CheckpointError, match="not signed by"):
        open_checkpoint(NOTE, NoteVerifier(ORIGIN, _key(2).public_key()))
    with pytest.raises(CheckpointError, match="not signed by"):
        open_checkpoint(NOTE, NoteVerifier("other.example/log", _key(1).public_key()))


def test_known_key_with_bad_signature_is_rejected() -> None:
    # Right name and key ID, but signed by another key: the signature is checked, and fails.
    body = CHECKPOINT.body()
    blob = base64.b64encode(VERIFIER.key_id + _key(2).sign(body)).decode()
    forged = body + f"\n\u2014 {ORIGIN} {blob}\n".encode()
    with pytest.raises(CheckpointError, match="invalid signature"):
        open_checkpoint(forged, VERIFIER)


def test_signatures_by_unknown_keys_are_ignored() -> None:
    other = NoteSigner.from_private_key("witness.example/w1", _key(3))
    other_line = sign_note(CHECKPOINT.body(), other).split(b"\n\n")[1]
    before = NOTE.replace(b"\n\n", b"\n\n" + other_line)
    after = NOTE + other_line
    assert open_checkpoint(before, VERIFIER) == CHECKPOINT
    assert open_checkpoint(after, VERIFIER) == CHECKPOINT
    with pytest.raises(CheckpointError, match="not signed by"):
        open_checkpoint(sign(CHECKPOINT, other), VERIFIER)


def test_too_many_signatures_are_rejected() -> None:
    other_line = sign(CHECKPOINT, NoteSigner.from_private_key("w", _key(3))).split(b"\n\n")[1]
    assert open_checkpoint(NOTE + other_line * 15, VERIFIER) == CHECKPOINT
    with pytest.raises(CheckpointError, match="too many"):
        open_checkpoint(NOTE + other_line * 100, VERIFIER)


# -- malformed notes -----------------------------------------------------------------------------


def _signed(body: bytes) -> bytes:
    return sign_note(body, SIGNER)


def _signed_raw(text: bytes) -> bytes:
    """A note signed without sign_note's checks on the text."""
    blob = base64.b64encode(SIGNER.key_id + SIGNER.sign(text)).decode()
    return text + f"\n\u2014 {ORIGIN} {blob}\n".encode()


ROOT_B64 = base64.b64encode(ROOT).decode()
_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
# 32 bytes leave two unused bits in the last base64 digit; setting one decodes to the same root.
ROOT_NONCANONICAL = ROOT_B64[:-2] + _ALPHABET[_ALPHABET.index(ROOT_B64[-2]) | 1] + "="
ROOT_URLSAFE = base64.urlsafe_b64encode(b"\xff" * 32).decode()


@pytest.mark.parametrize(
    "note",
    [
        pytest.param(b"", id="empty"),
        pytest.param(NOTE[:-1], id="no-final-newline"),
        pytest.param(NOTE + b"garbage", id="trailing-garbage"),
        pytest.param(NOTE + b"garbage\n", id="trailing-garbage-line"),
        pytest.param(NOTE + b"\n", id="trailing-blank-line"),
        pytest.param(b"garbage\n" + NOTE, id="preceding-garbage"),
        pytest.param(NOTE.replace(b"\n\n", b"\n"), id="no-blank-line"),
        pytest.param(NOTE.replace(b"\n", b"\r\n"), id="crlf"),
        pytest.param(NOTE.replace(b"\n5\n", b"\n5\x00\n"), id="control-char"),
        pytest.param(NOTE.replace(b"\n5\n", b"\n5\xff\n"), id="invalid-utf8"),
        pytest.param(NOTE.replace("\u2014".encode(), b"-"), id="hyphen-not-em-dash"),
        pytest.param(NOTE.replace("\u2014 ".encode(), "\u2014".encode()), id="no-space-after-dash"),
        pytest.param(
            NOTE.replace(f" {ORIGIN} ".encode(), f"  {ORIGIN} ".encode()), id="two-spaces"
        ),
        pytest.param(NOTE.rsplit(b" ", 1)[0] + b"\n", id="no-signature"),
        pytest.param(NOTE.rsplit(b" ", 1)[0] + b" AAAA\n", id="signature-too-short"),
        pytest.param(NOTE.rsplit(b" ", 1)[0] + b" !!!!\n", id="signature-not-base64"),
        pytest.param(NOTE[:-2] + b"\n", id="signature-padding-missing"),
        pytest.param(NOTE[:-1] + b" \n", id="signature-trailing-space"),
        pytest.param(_signed_raw(b""), id="empty-body"),
        pytest.param(_signed_raw(CHECKPOINT.body()[:-1]), id="body-no-final-newline"),
        pytest.param(_signed(f"{ORIGIN}\n5\n".encode()), id="two-lines"),
        pytest.param(_signed(f"\n5\n{ROOT_B64}\n".encode()), id="empty-origin"),
        pytest.param(_signed(f"{ORIGIN}\n05\n{ROOT_B64}\n".encode()), id="size-leading-zero"),
        pytest.param(_signed(f"{ORIGIN}\n-1\n{ROOT_B64}\n".encode()), id="size-negative"),
        pytest.param(_signed(f"{ORIGIN}\n+5\n{ROOT_B64}\n".encode()), id="size-plus"),
        pytest.param(_signed(f"{ORIGIN}\n 5\n{ROOT_B64}\n".encode()), id="size-space"),
        pytest.param(_signed(f"{ORIGIN}\n\n{ROOT_B64}\n".encode()), id="size-empty"),
        pytest.param(_signed(f"{ORIGIN}\n0x5\n{ROOT_B64}\n".encode()), id="size-hex"),
        pytest.param(_signed(f"{ORIGIN}\n\u0665\n{ROOT_B64}\n".encode()), id="size-arabic-digit"),
        pytest.param(_signed(f"{ORIGIN}\n1_000\n{ROOT_B64}\n".encode()), id="size-underscore"),
        pytest.param(_signed(f"{ORIGIN}\n{2**64}\n{ROOT_B64}\n".encode()), id="size-too-large"),
        pytest.param(
            _signed(f"{ORIGIN}\n5\n{base64.b64encode(ROOT[:31]).decode()}\n".encode()),
            id="root-31-bytes",
        ),
        pytest.param(
            _signed(f"{ORIGIN}\n5\n{base64.b64encode(ROOT + b'x').decode()}\n".encode()),
            id="root-33-bytes",
        ),
        pytest.param(_signed(f"{ORIGIN}\n5\n{ROOT_B64[:-1]}\n".encode()), id="root-no-padding"),
        pytest.param(
            _signed(f"{ORIGIN}\n5\n{ROOT_NONCANONICAL}\n".encode()), id="root-non-canonical-bits"
        ),
        pytest.param(_signed(f"{ORIGIN}\n5\n{ROOT_URLSAFE}\n".encode()), id="root-urlsafe-base64"),
        pytest.param(_signed(f"{ORIGIN}\n5\n{ROOT_B64}\n\nx\n".encode()), id="empty-extension"),
        pytest.param(_signed(f"{ORIGIN}\n5\n{ROOT_B64} \n".encode()), id="root-trailing-space"),
    ],
)
def test_malformed_notes_are_rejected(note: bytes) -> None:
    with pytest.raises(CheckpointError):
        open_checkpoint(note, VERIFIER)


@pytest.mark.parametrize(
    "text",
    [b"no final newline", b"bad \x07 bell\n", b"\xff\n"],
)
def test_sign_note_rejects_invalid_text(text: bytes) -> None:
    with pytest.raises(CheckpointError):
        sign_note(text, SIGNER)


@pytest.mark.parametrize(
    ("origin", "size", "root", "extensions"),
    [
        ("", 1, ROOT, ()),
        ("a\nb", 1, ROOT, ()),
        (ORIGIN, -1, ROOT, ()),
        (ORIGIN, 2**64, ROOT, ()),
        (ORIGIN, True, ROOT, ()),
        (ORIGIN, 1, ROOT[:31], ()),
        (ORIGIN, 1, b"", ()),
        (ORIGIN, 1, ROOT, ("",)),
        (ORIGIN, 1, ROOT, ("a\nb",)),
    ],
)
def test_invalid_checkpoints_cannot_be_made(
    origin: str, size: int, root: bytes, extensions: tuple[str, ...]
) -> None:
    with pytest.raises(CheckpointError):
        Checkpoint(origin, size, root, extensions)
