"""What a citizen is told before they give a consent, and the names they see.

``notices.json`` holds the notice of every purpose a citizen can give an explicit
request, a consent or a waiver of confidentiality for, in Swedish and English,
versioned: a grant records the version and language the citizen was shown, and
``Notice.digest`` pins the exact text. ``labels.json`` names agencies, services,
datasets, fields and purposes in both languages. ``offers`` reads the purpose
registry (policy data) to list what a citizen can be asked for.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
NOTICES_FILE = HERE / "notices.json"
LABELS_FILE = HERE / "labels.json"
LANGUAGES = ("sv", "en")
# The consent kinds a citizen gives, as the purpose registry names them.
CITIZEN_KINDS = ("explicit_request", "waiver_of_confidentiality", "consent")


class NoticeError(ValueError):
    """A notice or label file that is malformed or incomplete."""


@dataclass(frozen=True)
class NoticeText:
    summary: str
    sections: tuple[tuple[str, str], ...]

    def canonical(self) -> str:
        return json.dumps(
            {"summary": self.summary, "sections": [list(s) for s in self.sections]},
            ensure_ascii=False,
            separators=(",", ":"),
            sort_keys=True,
        )


@dataclass(frozen=True)
class Notice:
    purpose: str
    version: str
    published: str
    texts: Mapping[str, NoticeText]

    def text(self, language: str) -> NoticeText:
        return self.texts.get(language) or self.texts["sv"]

    def digest(self, language: str) -> str:
        """SHA-256 (hex) of the text shown in ``language``."""
        return hashlib.sha256(self.text(language).canonical().encode()).hexdigest()


def _text(raw: Any, where: str) -> NoticeText:
    if not isinstance(raw, Mapping) or not isinstance(raw.get("summary"), str):
        raise NoticeError(f"{where}: a notice text needs a summary")
    sections = raw.get("sections")
    if not isinstance(sections, list) or not sections:
        raise NoticeError(f"{where}: a notice text needs sections")
    parsed = []
    for section in sections:
        if not isinstance(section, Mapping):
            raise NoticeError(f"{where}: a section must be an object")
        heading, text = section.get("heading"), section.get("text")
        if not isinstance(heading, str) or not isinstance(text, str):
            raise NoticeError(f"{where}: a section needs a heading and a text")
        parsed.append((heading, text))
    return NoticeText(raw["summary"], tuple(parsed))


class Notices:
    """Every version of every purpose's notice."""

    def __init__(self, notices: Mapping[str, list[Notice]]) -> None:
        self._notices = dict(notices)

    @classmethod
    def load(cls, path: Path = NOTICES_FILE) -> Notices:
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise NoticeError(f"cannot read {path.name}: {exc}") from exc
        notices: dict[str, list[Notice]] = {}
        for purpose, entry in document.items():
            versions = entry.get("versions") if isinstance(entry, Mapping) else None
            if not isinstance(versions, list) or not versions:
                raise NoticeError(f"{purpose}: needs a list of versions")
            parsed = []
            for raw in versions:
                where = f"{purpose} v{raw.get('version')}"
                texts = {lang: _text(raw.get(lang), f"{where} [{lang}]") for lang in LANGUAGES}
                parsed.append(
                    Notice(purpose, str(raw["version"]), str(raw.get("published", "")), texts)
                )
            notices[purpose] = parsed
        return cls(notices)

    def __contains__(self, purpose: object) -> bool:
        return purpose in self._notices

    def latest(self, purpose: str) -> Notice | None:
        versions = self._notices.get(purpose)
        return versions[-1] if versions else None

    def get(self, purpose: str, version: str) -> Notice | None:
        for notice in self._notices.get(purpose, []):
            if notice.version == version:
                return notice
        return None


class Labels:
    """Names shown to citizens, by kind ("agencies", "fields", ...) and key."""

    def __init__(self, labels: Mapping[str, Mapping[str, Mapping[str, str]]]) -> None:
        self._labels = labels

    @classmethod
    def load(cls, path: Path = LABELS_FILE) -> Labels:
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise NoticeError(f"cannot read {path.name}: {exc}") from exc
        return cls(document)

    def name(self, kind: str, key: str, language: str) -> str:
        """The name of ``key`` in ``language``, or ``key`` itself if it has none."""
        entry = self._labels.get(kind, {}).get(key, {})
        return entry.get(language) or entry.get("en") or key

    def keys(self, kind: str) -> set[str]:
        return set(self._labels.get(kind, {}))


@dataclass(frozen=True)
class Offer:
    """One thing a citizen can give: a kind of consent for one requester and dataset."""

    purpose: str
    kind: str
    agency: str
    service: str
    dataset: str
    provider: str
    fields: tuple[str, ...]
    lawful_basis: str

    @property
    def path(self) -> str:
        return f"{self.purpose}/{self.agency}/{self.service}/{self.dataset}"


def lawful_basis(entry: Mapping[str, Any]) -> str:
    """``GDPR Art. 6(1)(e); <statute>`` for a purpose registry entry."""
    basis = entry.get("lawful_basis")
    if not isinstance(basis, Mapping):
        return ""
    parts = [
        f"GDPR Art. {basis['article']}" if basis.get("article") else "",
        str(basis.get("statute") or ""),
    ]
    return "; ".join(p for p in parts if p)


def offers(purposes: Mapping[str, Any], datasets: Mapping[str, Any]) -> list[Offer]:
    """Everything the purpose registry lets a citizen give a consent for, in order."""
    found = []
    for purpose, entry in purposes.items():
        kind = entry.get("required_consent")
        if kind not in CITIZEN_KINDS:
            continue
        for requester in entry.get("requesters", []):
            for dataset, fields in entry.get("datasets", {}).items():
                found.append(
                    Offer(
                        purpose=purpose,
                        kind=str(kind),
                        agency=str(requester["agency"]),
                        service=str(requester["service"]),
                        dataset=dataset,
                        provider=str(datasets.get(dataset, {}).get("provider", "")),
                        fields=tuple(fields),
                        lawful_basis=lawful_basis(entry),
                    )
                )
    return found


def load_registry(policies: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The purpose and dataset registries from the policy data."""
    registry = policies / "tillit" / "registry"
    try:
        purposes = json.loads((registry / "purposes" / "data.json").read_text(encoding="utf-8"))
        datasets = json.loads((registry / "datasets" / "data.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise NoticeError(f"cannot read the purpose registry: {exc}") from exc
    return purposes, datasets
