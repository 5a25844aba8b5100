"""Who is calling: identity and role from the verified client certificate.

Servers require and verify client certificates (mutual TLS); there is no
plaintext mode. The caller's identity is the certificate's
``spiffe://<trust domain>/<role>/<agency>[/<service>]`` URI name, never a
request field.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import urlsplit

import grpc
from cryptography import x509

from broker.errors import Unauthenticated
from broker.pki import TRUST_DOMAIN, TlsFiles


class Role(StrEnum):
    BROKER = "broker"
    PROVIDER = "provider"
    REQUESTER = "requester"
    PORTAL = "portal"
    DPO = "dpo"
    OPA = "opa"
    IDP = "idp"


@dataclass(frozen=True)
class Identity:
    """A verified caller."""

    role: Role
    agency: str
    service: str = ""

    def __str__(self) -> str:
        return f"{self.role}:{self.agency}" + (f"/{self.service}" if self.service else "")


def parse_identity_uri(uri: str, trust_domain: str = TRUST_DOMAIN) -> Identity:
    """Parse ``spiffe://<trust domain>/<role>/<agency>[/<service>]``."""
    parts = urlsplit(uri)
    if parts.scheme != "spiffe" or parts.netloc != trust_domain:
        raise Unauthenticated("client certificate is not from this trust domain")
    segments = [s for s in parts.path.split("/") if s]
    if len(segments) not in (2, 3):
        raise Unauthenticated("client certificate has a malformed identity")
    try:
        role = Role(segments[0])
    except ValueError as exc:
        raise Unauthenticated("client certificate names an unknown role") from exc
    return Identity(role, segments[1], segments[2] if len(segments) == 3 else "")


@functools.lru_cache(maxsize=1024)
def identity_from_pem(pem: bytes, trust_domain: str = TRUST_DOMAIN) -> Identity:
    """The identity in a PEM certificate (already verified by the TLS layer)."""
    cert = x509.load_pem_x509_certificate(pem)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound as exc:
        raise Unauthenticated("client certificate has no identity") from exc
    uris = [
        u
        for u in san.get_values_for_type(x509.UniformResourceIdentifier)
        if u.startswith("spiffe://")
    ]
    if len(uris) != 1:
        raise Unauthenticated("client certificate must carry exactly one identity")
    return parse_identity_uri(uris[0], trust_domain)


def peer_identity(context: grpc.aio.ServicerContext[object, object]) -> Identity:
    """The verified identity of the caller of the current RPC."""
    auth = context.auth_context()
    # gRPC core extracts the SPIFFE id from the verified peer certificate.
    spiffe = list(auth.get("peer_spiffe_id") or ())
    if spiffe:
        return _identity_from_uri(spiffe[0])
    pems = list(auth.get("x509_pem_cert") or ())
    if not pems:
        raise Unauthenticated("a client certificate is required")
    return identity_from_pem(pems[0])


@functools.lru_cache(maxsize=1024)
def _identity_from_uri(uri: bytes) -> Identity:
    return parse_identity_uri(uri.decode("ascii", "replace"))


def server_credentials(files: TlsFiles) -> grpc.ServerCredentials:
    """mTLS server credentials: client certificates are required and verified."""
    ca, cert, key = files.read()
    return grpc.ssl_server_credentials(
        [(key, cert)], root_certificates=ca, require_client_auth=True
    )


def channel_credentials(files: TlsFiles) -> grpc.ChannelCredentials:
    """mTLS client credentials."""
    ca, cert, key = files.read()
    return grpc.ssl_channel_credentials(
        root_certificates=ca, private_key=key, certificate_chain=cert
    )
