"""The citizen's web page (``tillit portal``) and the development sign-in (``tillit idp``)."""

from consent.web.app import PortalConfig, create_portal_app
from consent.web.idp import IdpConfig, create_idp_app
from consent.web.launch import Site, start_idp, start_portal

__all__ = [
    "IdpConfig",
    "PortalConfig",
    "Site",
    "create_idp_app",
    "create_portal_app",
    "start_idp",
    "start_portal",
]
