"""The policy bundle the local OPA runs: ``policies/`` plus its revision, as one file.

OPA activates a bundle as a whole, so building a new ``bundle.tar.gz`` and
renaming it over the old one (atomic on POSIX) swaps every rule and data
document at once: no decision ever mixes two revisions. The revision (a digest
of the policy and data files) is inside the bundle at ``data.tillit.meta``, so
each decision reports the revision it was actually made with.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
import tempfile
from pathlib import Path

from broker.policy import policy_files, policy_revision

BUNDLE_ROOT = "tillit"


def _add(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    info.mtime = 0  # reproducible: the same policies give the same bytes
    archive.addfile(info, io.BytesIO(data))


def build_bundle(policies: Path, target: Path) -> str:
    """Write the bundle for ``policies`` to ``target`` atomically; return its revision."""
    revision = policy_revision(policies)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=".bundle-", suffix=".tar.gz", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz") as archive:
            manifest = {"revision": revision, "roots": [BUNDLE_ROOT]}
            _add(archive, ".manifest", json.dumps(manifest).encode())
            for path in sorted(policy_files(policies)):
                _add(archive, str(path.relative_to(policies)), path.read_bytes())
            meta = {"revision": revision}
            _add(archive, f"{BUNDLE_ROOT}/meta/data.json", json.dumps(meta).encode())
        os.replace(temp, target)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    return revision
