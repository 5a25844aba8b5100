"""Policy decisions from a real OPA server, failing closed.

The broker asks OPA (through ``opa-python-client``'s async client, one pooled
HTTPS connection set with a client certificate) for the ``tillit.exchange``
decision. Anything short of a well-formed decision (OPA down, too slow, an
undefined result, a malformed one, no policy revision) raises
``PolicyUnavailable``: no decision means no data.
"""

from __future__ import annotations

import asyncio
import hashlib
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from opa_client.opa_async import AsyncOpaClient

from broker.errors import PolicyUnavailable, Reason
from broker.pki import TlsFiles


@dataclass(frozen=True)
class Decision:
    """OPA's answer, validated."""

    allow: bool
    reasons: tuple[Reason, ...]
    permitted_fields: tuple[str, ...]
    excess_fields: tuple[str, ...]
    lawful_basis: str
    consent_id: str
    obligations: tuple[str, ...]
    revision: str


def _list(raw: Any, name: str) -> list[Any]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ValueError(f"{name} must be a list")
    return raw


def _reason(raw: Any) -> Reason:
    if not isinstance(raw, Mapping) or not isinstance(raw.get("code"), str) or not raw["code"]:
        raise ValueError("reason without a code")
    return Reason(raw["code"], str(raw.get("message", "")), str(raw.get("article", "")))


def _strings(raw: Any, name: str) -> tuple[str, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list) or not all(isinstance(x, str) for x in raw):
        raise ValueError(f"{name} must be a list of strings")
    return tuple(raw)


def format_lawful_basis(raw: Any) -> str:
    """A registry or decision lawful basis as text: "GDPR Art. 6(1)(e); <statute>"."""
    if raw is None:
        return ""
    if isinstance(raw, str):
        return raw
    if isinstance(raw, Mapping):
        article = str(raw.get("article") or "")
        parts = [f"GDPR Art. {article}" if article else "", str(raw.get("statute") or "")]
        return "; ".join(p for p in parts if p)
    raise ValueError("lawful_basis must be an object or a string")


def _obligation(raw: Any) -> str:
    if isinstance(raw, str):
        return raw
    if isinstance(raw, Mapping) and isinstance(raw.get("type"), str):
        rest = ",".join(f"{k}={raw[k]}" for k in sorted(raw) if k != "type")
        return f"{raw['type']}:{rest}" if rest else raw["type"]
    raise ValueError("obligation must be a string or an object with a type")


def parse_decision(result: Any) -> Decision:
    """Validate OPA's ``result``; raise ``PolicyUnavailable`` if it is not a decision."""
    if not isinstance(result, Mapping):
        raise PolicyUnavailable("the policy gave no decision")
    try:
        allow = result["allow"]
        if not isinstance(allow, bool):
            raise ValueError("allow must be a boolean")
        revision = result.get("revision")
        if not isinstance(revision, str) or not revision:
            raise ValueError("the decision carries no policy revision")
        reasons = tuple(_reason(r) for r in _list(result.get("reasons"), "reasons"))
        if not allow and not reasons:
            raise ValueError("a denial must give a reason")
        consent_id = result.get("consent_id") or ""
        if not isinstance(consent_id, str):
            raise ValueError("consent_id must be a string")
        decision = Decision(
            allow=allow,
            reasons=reasons,
            permitted_fields=_strings(result.get("permitted_fields"), "permitted_fields"),
            excess_fields=_strings(result.get("excess_fields"), "excess_fields"),
            lawful_basis=format_lawful_basis(result.get("lawful_basis")),
            consent_id=consent_id,
            obligations=tuple(
                _obligation(o) for o in _list(result.get("obligations"), "obligations")
            ),
            revision=revision,
        )
    except (KeyError, ValueError, TypeError) as exc:
        raise PolicyUnavailable(f"the policy gave a malformed decision: {exc}") from exc
    if decision.allow and not decision.permitted_fields:
        raise PolicyUnavailable("the policy allowed the request but permitted no field")
    return decision


def policy_revision(policies: Path) -> str:
    """Digest of every policy and data file OPA loads (tests excluded), sorted by path."""
    digest = hashlib.sha256()
    for path in sorted(policy_files(policies)):
        digest.update(str(path.relative_to(policies)).encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return "sha256:" + digest.hexdigest()


def policy_files(policies: Path) -> list[Path]:
    """The files that make the policy bundle: Rego (not tests) and data documents."""
    files = []
    for path in policies.rglob("*"):
        rel = path.relative_to(policies)
        if not path.is_file() or any(p.startswith(".") or p == "testdata" for p in rel.parts):
            continue
        if path.name.endswith("_test.rego"):
            continue
        if path.suffix == ".rego" or path.name in ("data.json", "data.yaml"):
            files.append(path)
    return files


class _TlsOpaClient(AsyncOpaClient):  # type: ignore[misc]
    """The library's async client, with our CA and client certificate for mTLS."""

    def __init__(self, tls: TlsFiles | None, limit: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._tls = tls
        self._limit = limit

    async def _init_session(self) -> None:
        context: ssl.SSLContext | bool = False
        if self._tls is not None:
            context = ssl.create_default_context(cafile=str(self._tls.ca))
            context.load_cert_chain(str(self._tls.cert), str(self._tls.key))
        self._connector = aiohttp.TCPConnector(ssl=context, limit=self._limit, keepalive_timeout=60)
        self._session = aiohttp.ClientSession(
            headers=self.headers,
            connector=self._connector,
            timeout=aiohttp.ClientTimeout(total=self.timeout),
        )


class PolicyEngine:
    """Asks OPA for exchange decisions and pushes the policy revision into it."""

    def __init__(
        self,
        url: str,
        tls: TlsFiles | None,
        *,
        decision_path: str = "tillit/exchange/decision",
        timeout_ms: int = 500,
        pool_size: int = 64,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise ValueError("OPA url must be https://host:port")
        self._timeout = timeout_ms / 1000
        self._client = _TlsOpaClient(
            tls if parts.scheme == "https" else None,
            pool_size,
            host=parts.hostname,
            port=parts.port or (443 if parts.scheme == "https" else 80),
            ssl=parts.scheme == "https",
            retries=0,
            timeout=self._timeout,
        )
        self._package, self._rule = decision_path.strip("/").rsplit("/", 1)
        self.url = url

    async def open(self) -> None:
        await self._client._init_session()

    async def close(self) -> None:
        await self._client.close_connection()

    async def decide(self, policy_input: Mapping[str, Any]) -> Decision:
        try:
            async with asyncio.timeout(self._timeout):
                response = await self._client.query_rule(
                    dict(policy_input), self._package, self._rule
                )
        except TimeoutError as exc:
            raise PolicyUnavailable("the policy engine did not answer in time") from exc
        except aiohttp.ClientResponseError as exc:
            # OPA answered with an error (e.g. a rule conflict): no decision.
            raise PolicyUnavailable("the policy engine could not evaluate the policy") from exc
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            raise PolicyUnavailable("the policy engine is unreachable") from exc
        if not isinstance(response, Mapping) or "result" not in response:
            raise PolicyUnavailable("the policy gave no decision")
        return parse_decision(response["result"])

    async def push_revision(self, revision: str) -> None:
        """Make OPA's decisions carry ``revision`` (``data.tillit.meta.revision``)."""
        await self._client.update_or_create_data({"revision": revision}, "tillit/meta")

    async def active_revision(self) -> str:
        """The revision OPA decides with now (``""`` when it has none)."""
        try:
            body = await self._client.get_data("tillit/meta/revision")
        except Exception:
            return ""
        result = body.get("result") if isinstance(body, Mapping) else None
        return result if isinstance(result, str) else ""

    async def healthy(self) -> bool:
        try:
            return bool(await self._client.check_health())
        except Exception:
            return False
