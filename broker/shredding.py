"""Crypto-shredding of the audit log's subject pseudonyms.

An audit entry names its subject only as ``<epoch>:<hex>``: HMAC-SHA256 of the identity number
under the key of the calendar month (UTC) the entry was made in, ``keys/pseudonym/<epoch>.key``
with ``<epoch>`` = ``YYYY-MM``. When a month's key is destroyed, nobody can compute that
month's pseudonyms any more, so the entries can no longer be linked to a person, while the
entries, their leaf hashes and the Merkle tree stay exactly as they were: the log still
verifies, proofs still work, counts by requester and purpose still add up.

A month's key is *expired* once ``retention_days`` have passed since the month ended; from then
on the broker no longer uses it (even if the file is still there) and ``tillit audit shred``
destroys the file. So every entry is linkable for at least ``retention_days`` and at most about
a month longer. ``retention_days = 0`` keeps every key (no shredding).

The consent store's pseudonyms use their own long-lived key (``pseudonym.key``) and are never
shredded here: a consent must be findable for as long as it is kept. See ``docs/audit.md`` for
what shredding does not cover.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
import secrets
from collections.abc import Callable
from pathlib import Path

__all__ = [
    "KEY_SIZE",
    "EpochKeyring",
    "epoch_end",
    "epoch_of",
    "is_epoch",
    "shred_after",
]

KEY_SIZE = 32
_EPOCH = re.compile(r"[0-9]{4}-(0[1-9]|1[0-2])")
_SUFFIX = ".key"


def is_epoch(text: str) -> bool:
    """Whether ``text`` names an epoch (``YYYY-MM``)."""
    return _EPOCH.fullmatch(text) is not None


def epoch_of(time: dt.datetime) -> str:
    """The epoch (UTC calendar month, ``YYYY-MM``) that ``time`` falls in."""
    utc = time.astimezone(dt.UTC)
    return f"{utc.year:04d}-{utc.month:02d}"


def epoch_end(epoch: str) -> dt.datetime:
    """The first instant after ``epoch``: midnight UTC on the first of the next month."""
    if not is_epoch(epoch):
        raise ValueError(f"not an epoch: {epoch!r}")
    year, month = int(epoch[:4]), int(epoch[5:])
    year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return dt.datetime(year, month, 1, tzinfo=dt.UTC)


def shred_after(epoch: str, retention_days: int) -> dt.datetime | None:
    """When ``epoch``'s key expires under ``retention_days`` (``None``: never)."""
    if retention_days <= 0:
        return None
    return epoch_end(epoch) + dt.timedelta(days=retention_days)


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class EpochKeyring:
    """The per-month pseudonym keys in one directory.

    File I/O happens in :meth:`load`, :meth:`shred` and, once a month, in :meth:`current` when
    it makes the new month's key (a 32-byte write and an fsync).
    """

    def __init__(
        self,
        directory: Path,
        *,
        retention_days: int = 0,
        clock: Callable[[], dt.datetime] | None = None,
    ) -> None:
        self.directory = directory
        self.retention_days = retention_days
        self._clock = clock or _utcnow
        self._keys: dict[str, bytes] = {}

    @classmethod
    def open(
        cls,
        directory: Path,
        *,
        retention_days: int = 0,
        clock: Callable[[], dt.datetime] | None = None,
    ) -> EpochKeyring:
        """Load the live keys and make sure this month's key exists (blocking)."""
        keyring = cls(directory, retention_days=retention_days, clock=clock)
        keyring.load()
        keyring.current()
        return keyring

    def _path(self, epoch: str) -> Path:
        return self.directory / f"{epoch}{_SUFFIX}"

    def expired(self, epoch: str, now: dt.datetime | None = None) -> bool:
        """Whether ``epoch``'s retention has run out at ``now``."""
        after = shred_after(epoch, self.retention_days)
        return after is not None and (now or self._clock()) >= after

    def epochs_on_disk(self) -> list[str]:
        """Every epoch with a key file, oldest first."""
        if not self.directory.is_dir():
            return []
        found = [p.name[: -len(_SUFFIX)] for p in self.directory.glob(f"*{_SUFFIX}")]
        return sorted(e for e in found if is_epoch(e))

    def load(self) -> None:
        """Read every key file whose epoch has not expired."""
        now = self._clock()
        for epoch in self.epochs_on_disk():
            if not self.expired(epoch, now):
                self._keys[epoch] = self._read(epoch)

    def _read(self, epoch: str) -> bytes:
        data = self._path(epoch).read_bytes()
        if len(data) != KEY_SIZE:
            raise ValueError(f"pseudonym key {epoch} must hold {KEY_SIZE} bytes")
        return data

    def _create(self, epoch: str) -> bytes:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = self._path(epoch)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return self._read(epoch)  # another process made it first; use theirs
        with os.fdopen(fd, "wb") as handle:
            handle.write(secrets.token_bytes(KEY_SIZE))
            handle.flush()
            # Durable before any entry uses it: a lost key would shred its month early.
            os.fsync(handle.fileno())
        _fsync_dir(self.directory)
        return self._read(epoch)

    def current(self) -> tuple[str, bytes]:
        """This month's epoch and key, made on first use."""
        epoch = epoch_of(self._clock())
        key = self._keys.get(epoch)
        if key is None:
            key = self._keys[epoch] = self._create(epoch)
        return epoch, key

    def live(self) -> list[tuple[str, bytes]]:
        """Every usable (epoch, key), newest first; expired keys are dropped from memory."""
        now = self._clock()
        for epoch in [e for e in self._keys if self.expired(e, now)]:
            del self._keys[epoch]
        return sorted(self._keys.items(), reverse=True)

    def shred(self, *, dry_run: bool = False) -> list[str]:
        """Destroy the key file of every expired epoch; return those epochs, oldest first.

        The file is overwritten with random bytes and fsynced before it is unlinked. On
        copy-on-write or wear-levelled storage, and in backups, old copies may survive:
        keep the keys directory out of backups that outlive the retention period.
        """
        now = self._clock()
        doomed = [e for e in self.epochs_on_disk() if self.expired(e, now)]
        if dry_run:
            return doomed
        for epoch in doomed:
            path = self._path(epoch)
            with contextlib.suppress(FileNotFoundError):
                with path.open("r+b") as handle:
                    handle.write(secrets.token_bytes(max(KEY_SIZE, path.stat().st_size)))
                    handle.flush()
                    os.fsync(handle.fileno())
                path.unlink()
            self._keys.pop(epoch, None)
        if doomed:
            _fsync_dir(self.directory)
        return doomed
