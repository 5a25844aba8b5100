"""Jinja2 templates (autoescaped, strict about undefined names) and the static files."""

from __future__ import annotations

from pathlib import Path

import jinja2
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

HERE = Path(__file__).resolve().parent
TEMPLATES_DIR = HERE / "templates"
STATIC_DIR = HERE / "static"


def templates() -> Jinja2Templates:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals["show_pnr"] = show_pnr
    return Jinja2Templates(env=env)


def show_pnr(pnr: str) -> str:
    """``YYYYMMDD-NNNN``, the way people write their personal identity number."""
    return f"{pnr[:8]}-{pnr[8:]}" if len(pnr) == 12 and pnr.isdigit() else pnr


def static_files() -> StaticFiles:
    return StaticFiles(directory=STATIC_DIR)
