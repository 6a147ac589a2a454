"""Config validation: every kind of mistake gets its own message naming key and fix."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest

from partnerboard.core.config import ConfigError, load_config, parse_config
from tests.conftest import REPO, config_dict

BASE = config_dict("http://127.0.0.1:9")


def problems(data: dict) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(data, "partners.toml")
    return info.value.problems


def test_shipped_demo_config_loads() -> None:
    cfg = load_config(REPO / "partners.toml")
    assert [p.id for p in cfg.partners] == ["marketplace", "payments"]
    assert cfg.partnership.timezone == "Europe/Warsaw"
    assert cfg.partner("payments").sla.uptime_target == 99.95
    assert cfg.partner("marketplace").endpoints[0].expect_body_contains == "ok"
    window = cfg.partner("marketplace").sla.maintenance_windows[0]
    assert window.start.utcoffset().total_seconds() == 3600


def test_valid_dict_loads_with_defaults() -> None:
    cfg = parse_config(BASE)
    assert cfg.collection.down_after_failures == 3
    assert cfg.partner("marketplace").endpoints[1].expected_status == 200
    assert cfg.partner("marketplace").base_url.endswith("/marketplace")


def test_out_of_range_names_file_key_and_bounds() -> None:
    data = copy.deepcopy(BASE)
    data["partners"][1]["sla"]["uptime_target"] = 999
    with pytest.raises(ConfigError) as info:
        parse_config(data, "partners.toml")
    assert str(info.value) == (
        "partners.toml: partners[1].sla.uptime_target must be between 0 and 100, got 999"
    )


def test_missing_key() -> None:
    data = copy.deepcopy(BASE)
    del data["partners"][0]["base_url"]
    assert problems(data) == ["partners[0].base_url is required; add `base_url = ...`"]


def test_missing_section() -> None:
    data = copy.deepcopy(BASE)
    del data["partnership"]
    assert problems(data) == ["partnership is required; add `partnership = ...`"]


def test_wrong_type() -> None:
    data = copy.deepcopy(BASE)
    data["partners"][0]["endpoints"][1]["timeout_seconds"] = "fast"
    assert problems(data) == ["partners[0].endpoints[1].timeout_seconds must be a number, got 'fast'"]


def test_unknown_partner_referenced_by_target() -> None:
    data = copy.deepcopy(BASE)
    data["targets"] = [{"partner": "logistics", "kpi": "conversion_rate", "value": 2.5}]
    [msg] = problems(data)
    assert 'targets[0].partner "logistics" is not a configured partner' in msg
    assert "known: marketplace, payments" in msg


def test_unknown_kpi_suggests_the_close_one() -> None:
    data = copy.deepcopy(BASE)
    data["targets"] = [{"partner": "payments", "kpi": "payment_sucess_rate", "value": 97}]
    [msg] = problems(data)
    assert msg.startswith("targets[0].kpi")
    assert 'did you mean "payment_success_rate"' in msg


def test_literal_secret_in_token_env_is_rejected_without_echoing_it() -> None:
    data = copy.deepcopy(BASE)
    secret = "sk_live_4eC39HqLyjWDarjtT1zdp7dc"
    data["partners"][0]["auth"]["token_env"] = secret
    [msg] = problems(data)
    assert msg.startswith("partners[0].auth.token_env looks like a literal secret")
    assert "NAME" in msg
    assert secret not in msg


def test_literal_token_key_is_rejected_without_echoing_it() -> None:
    data = copy.deepcopy(BASE)
    data["partners"][1]["auth"] = {"type": "bearer", "token": "hunter2-very-secret"}
    [msg] = problems(data)
    assert "partners[1].auth" in msg and "`token` holds a literal secret" in msg
    assert "hunter2" not in msg


def test_misspelt_key_gets_a_suggestion() -> None:
    data = copy.deepcopy(BASE)
    data["partners"][0]["endpoints"][0]["timeout_secnds"] = 3
    [msg] = problems(data)
    assert msg.startswith("partners[0].endpoints[0].timeout_secnds is not a known setting")
    assert 'did you mean "timeout_seconds"' in msg


def test_timeout_longer_than_interval() -> None:
    data = copy.deepcopy(BASE)
    data["partners"][0]["endpoints"][0]["timeout_seconds"] = 5
    [msg] = problems(data)
    assert "timeout_seconds (5) must not exceed interval_seconds (1)" in msg


def test_bad_time_zone_and_duplicate_ids_reported_together() -> None:
    data = copy.deepcopy(BASE)
    data["partnership"]["timezone"] = "Europe/Warsw"
    data["partners"][0]["endpoints"][1]["id"] = "health"
    found = problems(data)
    assert any('unknown time zone "Europe/Warsw"' in p for p in found)
    assert any('endpoint id "health" is used twice' in p for p in found)


def test_maintenance_window_needs_offset_and_order() -> None:
    data = copy.deepcopy(BASE)
    data["partners"][0]["sla"]["maintenance_windows"] = [
        {"start": "2026-11-08T04:00:00+01:00", "end": "2026-11-08T02:00:00+01:00"}
    ]
    [msg] = problems(data)
    assert msg == "partners[0].sla.maintenance_windows[0]: end must be after start"


def test_toml_syntax_error_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "partners.toml"
    path.write_text('[partnership]\nname = "x\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith("partners.toml: is not valid TOML")


def test_missing_file_says_how_to_point_at_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "nope.toml")
    assert "pass --config PATH or set PARTNERBOARD_CONFIG" in str(info.value)


def _cli(*args: str, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    import os

    env = {**os.environ, **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "partnerboard.cli", *args], capture_output=True,
                          text=True, cwd=REPO, env=env, timeout=60)


@pytest.mark.slow
def test_check_config_exit_codes(tmp_path: Path) -> None:
    """Each `check-config` is a real subprocess with a 60-s ceiling: a failure bound that
    ``subprocess.run`` ends as soon as the command exits, long because an interpreter's start-up and
    imports take many times longer than idle on a loaded 2-core machine (two busy loops beside it)."""
    from partnerboard.simulator.server import SECRET_ENV

    ok = _cli("check-config", "--config", str(REPO / "partners.toml"),
              env_extra={env: "x" * 20 for env in SECRET_ENV.values()})
    assert ok.returncode == 0, ok.stderr
    assert "partners.toml: OK" in ok.stdout
    assert "warning" not in ok.stderr

    bad = tmp_path / "partners.toml"
    bad.write_text((REPO / "partners.toml").read_text().replace("uptime_target = 99.95",
                                                                 "uptime_target = 999"))
    res = _cli("check-config", "--config", str(bad))
    assert res.returncode == 1
    assert "partners.toml: partners[1].sla.uptime_target must be between 0 and 100, got 999" \
        in res.stderr

    missing = _cli("check-config", "--config", str(tmp_path / "absent.toml"))
    assert missing.returncode == 1
    assert "file not found" in missing.stderr


@pytest.mark.slow
def test_check_config_warns_about_unset_secrets_via_env_var(tmp_path: Path) -> None:
    """The `check-config` subprocess has a 60-s ceiling: a failure bound that ``subprocess.run`` ends
    as soon as the command exits, long because an interpreter's start-up and imports take many times
    longer than idle on a loaded 2-core machine (two busy loops beside it)."""
    import os

    env = {k: v for k, v in os.environ.items() if not k.endswith("_TOKEN")}
    env["PARTNERBOARD_CONFIG"] = str(REPO / "partners.toml")
    env["PARTNERBOARD_SECRETS_FILE"] = str(tmp_path / "none.toml")
    res = subprocess.run([sys.executable, "-m", "partnerboard.cli", "check-config"],
                         capture_output=True, text=True, cwd=tmp_path, env=env, timeout=60)
    assert res.returncode == 0
    assert "secret PARTNERBOARD_PAYMENTS_TOKEN is not set" in res.stderr


def test_endpoint_and_source_paths_must_be_relative() -> None:
    data = config_dict("http://127.0.0.1:9")
    data["partners"][0]["endpoints"][0]["path"] = "health"
    data["partners"][1]["sources"][0]["path"] = "x"
    with pytest.raises(ConfigError) as err:
        parse_config(data)
    assert 'partners[0].endpoints[0].path must start with "/", got "health"' in str(err.value)
    assert 'partners[1].sources[0].path must start with "/", got "x"' in str(err.value)


def test_the_configuration_reference_is_generated_from_the_models() -> None:
    """Every key documented, with type, default and description; regenerated, not edited."""
    from partnerboard.core.config import reference as config_reference
    from tests.conftest import REPO

    assert config_reference.missing_descriptions() == [], "write a docstring under each setting"
    doc = (REPO / "docs" / "configuration-reference.md").read_text()
    assert doc == config_reference.render_markdown(), \
        "regenerate: python -m partnerboard.core.config.reference > docs/configuration-reference.md"
    for key in ("size_param", "offset_param", "has_more_path", "id_field", "max_pages", "end_param",
                "fetcher", "order", "const", "default", "degraded_quarantine_pct", "trusted_proxies"):
        assert f"| `{key}` |" in doc, key
    # Enumerated columns list their values, so a mapping can be checked against them.
    assert "`created` \\| `paid` \\| `shipped` \\| `delivered` \\| `cancelled`" in doc
    assert "| `size_param` | string | `\"limit\"` |" in doc


def test_the_packaged_demo_config_is_partners_toml() -> None:
    """`partnerboard demo` outside a checkout uses the copy inside the package."""
    from tests.conftest import REPO

    packaged = (REPO / "partnerboard" / "demo_partners.toml").read_bytes()
    assert packaged == (REPO / "partners.toml").read_bytes(), "copy partners.toml to partnerboard/"
