from __future__ import annotations

from pathlib import Path

import pytest

from broker.config import DEFAULT_PROVIDERS, load_settings
from broker.errors import ConfigError


def test_defaults_need_no_file() -> None:
    settings = load_settings(env={})
    assert settings.broker.listen == "127.0.0.1:50051"
    assert settings.opa.mode == "local"
    assert dict(settings.providers.addresses) == DEFAULT_PROVIDERS
    assert settings.database_url.startswith("sqlite+aiosqlite:///")
    assert settings.database_url.endswith("/.data/tillit.db")


def test_file_then_environment(tmp_path: Path) -> None:
    path = tmp_path / "tillit.toml"
    path.write_text(
        '[broker]\nlisten = "127.0.0.1:6000"\ndata_dir = "/srv/tillit"\n'
        "[opa]\ntimeout_ms = 250\n"
        '[providers]\naddresses = { tax-agency = "127.0.0.1:7000" }\n'
    )
    settings = load_settings(path, env={"TILLIT_OPA_TIMEOUT_MS": "100"})
    assert settings.broker.listen == "127.0.0.1:6000"
    assert settings.data_dir == Path("/srv/tillit")
    assert settings.pki_dir == Path("/srv/tillit/pki")
    assert settings.opa.timeout_ms == 100
    assert dict(settings.providers.addresses) == {"tax-agency": "127.0.0.1:7000"}


def test_environment_mapping_and_config_variable(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[database]\nurl = "postgresql+asyncpg://db/tillit"\n')
    settings = load_settings(
        env={
            "TILLIT_CONFIG": str(path),
            "TILLIT_PROVIDERS_ADDRESSES": "tax-agency=127.0.0.1:1, social-insurance=127.0.0.1:2",
        }
    )
    assert settings.database_url == "postgresql+asyncpg://db/tillit"
    assert dict(settings.providers.addresses) == {
        "tax-agency": "127.0.0.1:1",
        "social-insurance": "127.0.0.1:2",
    }


@pytest.mark.parametrize(
    ("document", "env", "message"),
    [
        ("[broker]\nport = 1\n", {}, "unknown setting"),
        ("[nonsense]\nx = 1\n", {}, "unknown section"),
        ("[opa]\ntimeout_ms = 'soon'\n", {}, "timeout_ms"),
        ("", {"TILLIT_OPA_MODE": "remote"}, "mode"),
        ("[opa]\nmode = 'external'\n", {}, "url is required"),
        ("not toml = = =", {}, "cannot read config"),
    ],
)
def test_bad_configuration_is_refused_clearly(
    tmp_path: Path, document: str, env: dict[str, str], message: str
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(document)
    with pytest.raises(ConfigError, match=message):
        load_settings(path, env=env)
