"""The typed settings object: file, environment, overrides, and clear errors."""

from __future__ import annotations

import pytest

from telerad.errors import ConfigError
from telerad.settings import load_settings


def test_defaults(monkeypatch):
    monkeypatch.delenv("TELERAD_CONFIG", raising=False)
    s = load_settings()
    assert s.dicom.port == 11112 and s.dicom.ae_title == "TELERAD" and str(s.data_dir) == "var"
    assert s.database_url.endswith("var/index.sqlite3") and s.dicom.quiet_period_s == 2.0


def test_priority_override_then_env_then_file(tmp_path, monkeypatch):
    cfg = tmp_path / "t.toml"
    cfg.write_text('data_dir = "/srv/x"\n[dicom]\nport = 2000\nae_title = "FILEAE"\n[http]\nport = 9000\n')
    monkeypatch.setenv("TELERAD_DICOM__PORT", "3000")
    s = load_settings(cfg, **{"http.port": 9100})
    assert s.dicom.port == 3000  # env beats file
    assert s.dicom.ae_title == "FILEAE"  # file beats default
    assert s.http.port == 9100  # override beats everything
    assert str(s.data_dir) == "/srv/x"
    monkeypatch.setenv("TELERAD_DATA_DIR", "/srv/env")
    assert str(load_settings(cfg).data_dir) == "/srv/env"


@pytest.mark.parametrize(
    "toml, field",
    [
        ("[dicom]\nport = 70000\n", "dicom.port"),
        ("[dicom]\nae_title = \"WAY_TOO_LONG_AE_TITLE\"\n", "dicom.ae_title"),
        ("[dicom]\nprot = 1\n", "dicom.prot"),
        ("[[clinics]]\nname = \"A\"\n", "clinics.0.ae_title"),
        ("environment = \"production\"\n", "secret_key"),
    ],
)
def test_bad_config_names_the_field(tmp_path, toml, field):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(toml)
    with pytest.raises(ConfigError) as err:
        load_settings(cfg)
    assert field in str(err.value)


def test_production_refuses_open_ae_access(tmp_path):
    cfg = tmp_path / "p.toml"
    cfg.write_text('environment = "production"\nsecret_key = "s3cret-value"\n[dicom]\naccept_any_ae = true\n')
    with pytest.raises(ConfigError, match="accept_any_ae"):
        load_settings(cfg)


def test_missing_and_invalid_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.toml")
    bad = tmp_path / "x.toml"
    bad.write_text("[dicom\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(bad)
