"""Routing rules as data: validation, matching on header dicts, first match wins, defaults."""

from __future__ import annotations

from datetime import datetime, time, timezone

import pytest

from pacs_gateway.routing.config import RoutingSettings
from pacs_gateway.routing.rules import SeriesFacts, decide, in_window, matches, unknown_destinations
from telerad.errors import ConfigError
from telerad.settings import load_settings

HEAD_CT = {"Modality": "CT", "BodyPartExamined": "HEAD", "SeriesDescription": "Head 5mm"}
CHEST_CT = {"Modality": "CT", "BodyPartExamined": "CHEST"}
NOON = datetime(2026, 3, 2, 12, 0, tzinfo=timezone.utc)


def routing(*rules, **extra) -> RoutingSettings:
    return RoutingSettings(rules=list(rules), timezone="UTC", **extra)


def facts(headers=HEAD_CT, **kw) -> SeriesFacts:
    kw.setdefault("kind", "ncct_head")
    return SeriesFacts.from_headers(headers, **kw)


@pytest.mark.parametrize(
    "kind, priority",
    [("ctp", "stroke"), ("ncct_head", "stroke"), ("cta_head", "stroke"), ("xray", "routine"), ("other", "routine"), (None, "routine")],
)
def test_no_rules_sends_everything_to_the_defaults_with_the_kind_priority(kind, priority):
    route = decide(routing(), facts(kind=kind), default_destinations=["lead", "backup"], now=NOON)
    assert route.destinations == ("lead", "backup")
    assert route.priority == priority
    assert route.rule is None


def test_first_matching_rule_wins_and_a_catch_all_catches_the_rest():
    r = routing(
        {"name": "ctp to stroke centre", "match": {"kind": "ctp"}, "destinations": ["stroke-centre"]},
        {"name": "heads", "match": {"body_part": ["head", "brain"]}, "destinations": ["neuro"], "priority": "routine"},
        {"name": "catch-all", "destinations": ["archive"]},
    )
    assert decide(r, facts(kind="ctp"), default_destinations=["lead"], now=NOON).destinations == ("stroke-centre",)
    heads = decide(r, facts(kind="ncct_head"), default_destinations=["lead"], now=NOON)
    assert (heads.destinations, heads.priority, heads.rule) == (("neuro",), "routine", "heads")
    chest = decide(r, facts(CHEST_CT, kind="other"), default_destinations=["lead"], now=NOON)
    assert (chest.destinations, chest.priority, chest.rule) == (("archive",), "routine", "catch-all")


def test_rule_without_destinations_uses_the_defaults_and_empty_list_routes_nowhere():
    r = routing(
        {"name": "xray stays local", "match": {"kind": "xray"}, "destinations": []},
        {"name": "ct defaults", "match": {"modality": "CT"}, "priority": "stroke"},
    )
    assert decide(r, facts({"Modality": "DX"}, kind="xray"), default_destinations=["lead"], now=NOON).destinations == ()
    ct = decide(r, facts(CHEST_CT, kind="other"), default_destinations=["lead"], now=NOON)
    assert ct.destinations == ("lead",) and ct.priority == "stroke"


def test_match_fields_on_header_dicts():
    f = SeriesFacts.from_headers(
        {"Modality": "ct", "BodyPartExamined": " Head "}, kind="cta_head", clinic="Township A",
        calling_ae="CT_A", study_description="CTA 头颈 stroke protocol",
    )  # fmt: skip
    t = time(12, 0)
    ok = dict(clinic=["township a"], calling_ae="CT_A", modality="CT", kind=["cta_head", "ctp"], body_part="HEAD",
              study_description=r"strok(e|ing)", time_of_day="08:00-18:00")  # fmt: skip
    m = RoutingSettings(rules=[{"name": "all", "match": ok}]).rules[0].match
    assert matches(m, f, t)
    for field, value in [("clinic", "Township B"), ("calling_ae", "CT_B"), ("modality", "MR"), ("kind", "ctp"),
                         ("body_part", "CHEST"), ("study_description", "^abdomen"), ("time_of_day", "18:00-08:00")]:  # fmt: skip
        m = RoutingSettings(rules=[{"name": "x", "match": {**ok, field: value}}]).rules[0].match
        assert not matches(m, f, t), field
    # a missing header never matches a rule that asks for it
    bare = SeriesFacts.from_headers({}, kind="ctp")
    m = RoutingSettings(rules=[{"name": "x", "match": {"body_part": "HEAD"}}]).rules[0].match
    assert not matches(m, bare, t)


def test_study_description_regex_is_case_insensitive_and_searched():
    r = routing({"name": "stroke", "match": {"study_description": "stroke|卒中"}, "destinations": ["s"]})
    hit = decide(r, facts(study_description="CT HEAD STROKE"), default_destinations=["d"], now=NOON)
    cn = decide(r, facts(study_description="急性卒中 CT"), default_destinations=["d"], now=NOON)
    miss = decide(r, facts(study_description="routine head"), default_destinations=["d"], now=NOON)
    assert hit.destinations == cn.destinations == ("s",) and miss.destinations == ("d",)


def test_time_of_day_windows_wrap_midnight_and_use_the_configured_zone():
    assert in_window(time(23, 0), time(20, 0), time(8, 0)) and in_window(time(7, 59), time(20, 0), time(8, 0))
    assert not in_window(time(8, 0), time(20, 0), time(8, 0)) and not in_window(time(12, 0), time(20, 0), time(8, 0))
    assert in_window(time(8, 0), time(8, 0), time(18, 0)) and not in_window(time(18, 0), time(8, 0), time(18, 0))
    night = {"name": "night", "match": {"time_of_day": "20:00-08:00"}, "destinations": ["on-call"]}
    shanghai = RoutingSettings(rules=[night], timezone="Asia/Shanghai")
    # 13:00 UTC is 21:00 in Shanghai: night there, not in UTC
    at = datetime(2026, 3, 2, 13, 0, tzinfo=timezone.utc)
    assert decide(shanghai, facts(), default_destinations=["day"], now=at).destinations == ("on-call",)
    assert decide(routing(night), facts(), default_destinations=["day"], now=at).destinations == ("day",)


def test_stroke_kinds_are_configurable():
    r = routing(stroke_kinds=["ctp"])
    assert decide(r, facts(kind="ncct_head"), default_destinations=[], now=NOON).priority == "routine"
    assert decide(r, facts(kind="ctp"), default_destinations=[], now=NOON).priority == "stroke"


@pytest.mark.parametrize(
    "toml, field",
    [
        ('[[routing.rules]]\nname = "a"\nmatch = { kind = "ct_perfusion" }\n', "routing.rules.0.match.kind.0"),
        ('[[routing.rules]]\nname = "a"\nmatch = { study_description = "(unclosed" }\n', "routing.rules.0.match.study_description"),
        ('[[routing.rules]]\nname = "a"\nmatch = { time_of_day = "25:00-08:00" }\n', "routing.rules.0.match.time_of_day"),
        ('[[routing.rules]]\nname = "a"\nmatch = { bodypart = "HEAD" }\n', "routing.rules.0.match.bodypart"),
        ('[[routing.rules]]\nname = "a"\npriority = "urgent"\n', "routing.rules.0.priority"),
        ('[[routing.rules]]\nmatch = {}\n', "routing.rules.0.name"),
        ('[routing]\ntimezone = "Mars/Olympus"\n', "routing.timezone"),
        ('[routing]\nlease_s = 0\n', "routing.lease_s"),
        ('[[destinations]]\nname = "x"\nkind = "dicom"\nhost = "h"\n', "destinations.0"),
        ('[[destinations]]\nname = "x"\nkind = "dicomweb"\nurl = "ftp://nope"\n', "destinations.0"),
        ('[[destinations]]\nname = "x"\nkind = "dicom"\nhost = "h"\nport = 1\nae_title = "A"\ncompression = "zip"\n',
         "destinations.0.compression"),
        ('[[destinations]]\nname = "x"\nkind = "dicomweb"\nurl = "http://h/dw"\nauth_header = "Bearer abc"\n',
         "destinations.0.auth_header"),
        ('[queue]\nurl = "amqp://broker"\n', "queue.url"),
    ],
)
def test_a_bad_rule_or_destination_fails_with_the_field_named(tmp_path, toml, field):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(toml)
    with pytest.raises(ConfigError) as err:
        load_settings(cfg)
    assert f"'{field}'" in str(err.value)


def test_rules_naming_an_unknown_destination_are_reported_with_the_field():
    r = routing({"name": "a", "destinations": ["lead"]}, {"name": "b", "destinations": ["lead", "gone"]})
    assert unknown_destinations(r, ["lead"]) == [("routing.rules.1.destinations.1", "gone")]


def test_gateway_refuses_to_start_with_a_rule_naming_an_unknown_destination(tmp_path):
    from telerad.app import build_gateway
    from tests.gateway.conftest import make_settings

    s = make_settings(tmp_path, **{"routing.rules": [{"name": "r", "destinations": ["nowhere"]}]})
    with pytest.raises(ConfigError, match=r"'routing.rules.0.destinations.0': no destination named 'nowhere'"):
        build_gateway(s)


def test_serve_reports_a_bad_rule_without_a_traceback(tmp_path, capsys):
    from pacs_gateway.cli import serve

    cfg = tmp_path / "t.toml"
    cfg.write_text('[[routing.rules]]\nname = "a"\nmatch = { kind = "brain" }\n')
    assert serve.main(["--config", str(cfg), "--data-dir", str(tmp_path / "var"), "--no-http"]) == 2
    err = capsys.readouterr().err
    assert "routing.rules.0.match.kind.0" in err and "Traceback" not in err
