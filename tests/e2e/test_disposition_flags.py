"""The KPIs the disposition flags give, through the real pipeline, on a floor worked by hand.

Deployment zone Asia/Shanghai, one day (Monday 2026-11-09). The dispositions file adds APPT
(a contact with a callback) for every campaign, and makes NI "not now, call back" in the
renewals campaign (a human answered, a callback, not "not interested").

  call agent team campaign  dir  what happened                           code (latest)
  k1   a1    T1   spring    out  human, contact, talk 120                SALE
  k2   a1    T1   spring    out  human, contact, talk 40                 NI
  k3   a1    T1   renewals  out  human, talk 30                          NI (override: callback)
  k12  a1    T1   spring    out  human, talk 50                          DNC, corrected to APPT
  k4   -     T1   spring    out  completed: answered, no agent           DROP
  k5   a2    T1   spring    out  human by the event, talk 15             AA (a machine)
  k6   a2    T1   spring    out  answered by a machine                   -
  k7   a2    T1   spring    out  human, talk 20                          DNC
  k14  a2    T1   spring    out  human by the event                      DROP
  k8   -     T2   renewals  in   offered, ended, nobody answered         -
  k9   a3    T2   renewals  in   human, talk 60                          -
  k10  -     T2   renewals  in   offered, ended                          TIMEOT (inbound drop)
  k11  a3    T2   renewals  out  human, talk 10                          ZZZ (unknown)
  k13  a3    T2   renewals  out  human, talk 25                          APPT

Worked out from the rules of docs/kpis.md:
  connects: a1 4 (k1 k2 k3 k12); a2 2 (k7, and the drop k14; k5 k6 are machines);
            a3 3 (k9 k11 k13); no agent 2 (the drops k4 and k10)         -> 11
  drops: k4, k14, k10 -> 3;  drop_rate = 3 / 11
  abandoned: k8, k10 -> 2 of 3 inbound calls
  machine_answers: k5, k6;  dnc_marks: k7 (k12 was corrected);
  callbacks_scheduled: k3 (override), k12, k13;  not_interested: k2 (k3 is overridden)
"""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tests.floor import call_events
from tests.pipeline import REPO, TIMEZONE, MakePipeline, Pipeline

ZONE = ZoneInfo(TIMEZONE)
DAY = datetime(2026, 11, 9, tzinfo=ZONE)

DISPOSITIONS_FILE = """\
# Codes for every campaign.
[codes]
APPT = { name = "Appointment", flags = ["human_answered", "contact", "callback"] }

# The renewals campaign's own meaning of NI.
[campaigns.renewals.codes]
NI = { name = "Not now", flags = ["human_answered", "callback"] }
"""

FLAG_KPIS = (
    "dials",
    "inbound_calls",
    "connects",
    "contacts",
    "talk_seconds",
    "drops",
    "drop_rate",
    "abandoned",
    "abandon_rate",
    "machine_answers",
    "dnc_marks",
    "callbacks_scheduled",
    "not_interested",
)


def _call(
    call_id: str,
    minute: int,
    *,
    agent: str | None,
    team: str,
    campaign: str,
    direction: str = "outbound",
    answered_by: str | None = None,
    contact: bool = True,
    talk: int = 0,
    codes: tuple[str, ...] = (),
) -> list[dict[str, Any]]:
    return call_events(
        call_id,
        DAY.replace(hour=10) + timedelta(minutes=minute),
        lead=f"lead-{call_id}",
        agent=agent,
        team=team,
        campaign=campaign,
        direction=direction,
        answered_by=answered_by,
        contact=contact,
        talk=talk,
        codes=codes,
    )


def _floor() -> list[dict[str, Any]]:
    return [
        *_call("k1", 0, agent="a1", team="T1", campaign="spring", answered_by="human", talk=120,
               codes=("SALE",)),
        *_call("k2", 5, agent="a1", team="T1", campaign="spring", answered_by="human", talk=40,
               codes=("NI",)),
        *_call("k3", 10, agent="a1", team="T1", campaign="renewals", answered_by="human", talk=30,
               codes=("NI",)),
        *_call("k12", 15, agent="a1", team="T1", campaign="spring", answered_by="human", talk=50,
               codes=("DNC", "APPT")),
        {
            "event_id": "k4-done",
            "type": "call.completed",
            "occurred_at": DAY.replace(hour=10, minute=20).isoformat(),
            "call_id": "k4",
            "team_id": "T1",
            "campaign_id": "spring",
            "lead_id": "lead-k4",
            "answered": True,
            "talk_seconds": 0,
            "disposition": "DROP",
        },
        *_call("k5", 25, agent="a2", team="T1", campaign="spring", answered_by="human", talk=15,
               codes=("AA",)),
        *_call("k6", 30, agent="a2", team="T1", campaign="spring", answered_by="machine"),
        *_call("k7", 35, agent="a2", team="T1", campaign="spring", answered_by="human", talk=20,
               codes=("DNC",)),
        *_call("k14", 40, agent="a2", team="T1", campaign="spring", answered_by="human",
               codes=("DROP",)),
        *_call("k8", 45, agent=None, team="T2", campaign="renewals", direction="inbound"),
        *_call("k9", 50, agent="a3", team="T2", campaign="renewals", direction="inbound",
               answered_by="human", talk=60),
        *_call("k10", 55, agent=None, team="T2", campaign="renewals", direction="inbound",
               codes=("TIMEOT",)),
        *_call("k11", 60, agent="a3", team="T2", campaign="renewals", answered_by="human",
               talk=10, codes=("ZZZ",)),
        *_call("k13", 65, agent="a3", team="T2", campaign="renewals", answered_by="human",
               talk=25, codes=("APPT",)),
    ]  # fmt: skip


@pytest.fixture(scope="module")
def dispositions_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("dispositions") / "dispositions.toml"
    path.write_text(DISPOSITIONS_FILE, encoding="utf-8")
    return path


@pytest.fixture
def flagged(make_pipeline: MakePipeline, dispositions_file: Path) -> Pipeline:
    pipeline = make_pipeline(CALLBOARD_DISPOSITIONS_FILE=str(dispositions_file))
    events = _floor()
    # Every event twice, the second copies in reverse order.
    pipeline.post(events + events[::-1])
    pipeline.wait_caught_up()
    return pipeline


def _day(**params: Any) -> dict[str, Any]:
    return {"from": DAY.isoformat(), "to": (DAY + timedelta(days=1)).isoformat(), **params}


def _by(pipeline: Pipeline, group: str) -> dict[Any, dict[str, Any]]:
    body = pipeline.metrics(**_day(metrics=",".join(FLAG_KPIS), group_by=group))
    return {row.get(f"{group}_id") if group != "none" else None: row for row in body["rows"]}


def _kpis(**values: Any) -> dict[str, Any]:
    zero: dict[str, Any] = dict.fromkeys(FLAG_KPIS, 0)
    zero.update(drop_rate=None, abandon_rate=None)
    return zero | values


def test_flag_kpis_per_agent_team_campaign_and_in_total(flagged: Pipeline) -> None:
    by_agent = _by(flagged, "agent")
    values = {k: {n: v for n, v in row.items() if n != "agent_id"} for k, row in by_agent.items()}
    assert values == {
        "a1": _kpis(dials=4, connects=4, contacts=4, talk_seconds=240, drop_rate=0.0,
                    callbacks_scheduled=2, not_interested=1),
        "a2": _kpis(dials=4, connects=2, contacts=1, talk_seconds=35, drops=1, drop_rate=0.5,
                    machine_answers=2, dnc_marks=1),
        "a3": _kpis(dials=2, inbound_calls=1, connects=3, contacts=3, talk_seconds=95,
                    drop_rate=0.0, abandon_rate=0.0, callbacks_scheduled=1),
        # The calls no agent took.
        None: _kpis(dials=1, inbound_calls=2, connects=2, drops=2, drop_rate=1.0, abandoned=2,
                    abandon_rate=1.0),
    }  # fmt: skip
    by_team = _by(flagged, "team")
    assert by_team["T1"] == {"team_id": "T1"} | _kpis(
        dials=9, connects=7, contacts=5, talk_seconds=275, drops=2, drop_rate=0.285714,
        machine_answers=2, dnc_marks=1, callbacks_scheduled=2, not_interested=1,
    )  # fmt: skip
    assert by_team["T2"] == {"team_id": "T2"} | _kpis(
        dials=2, inbound_calls=3, connects=4, contacts=3, talk_seconds=95, drops=1,
        drop_rate=0.25, abandoned=2, abandon_rate=0.666667, callbacks_scheduled=1,
    )  # fmt: skip
    by_campaign = _by(flagged, "campaign")
    # NI is a callback in renewals and "not interested" in spring.
    assert (
        by_campaign["renewals"]["callbacks_scheduled"],
        by_campaign["renewals"]["not_interested"],
    ) == (2, 0)
    assert (
        by_campaign["spring"]["callbacks_scheduled"],
        by_campaign["spring"]["not_interested"],
    ) == (1, 1)
    assert (by_campaign["spring"]["drops"], by_campaign["spring"]["connects"]) == (2, 6)
    assert by_campaign["spring"]["drop_rate"] == 0.333333
    total = _by(flagged, "none")[None]
    assert total == _kpis(
        dials=11, inbound_calls=3, connects=11, contacts=8, talk_seconds=370, drops=3,
        drop_rate=0.272727, abandoned=2, abandon_rate=0.666667, machine_answers=2, dnc_marks=1,
        callbacks_scheduled=3, not_interested=1,
    )  # fmt: skip


def test_flag_kpis_by_day_and_hour(flagged: Pipeline) -> None:
    body = flagged.metrics(**_day(metrics="drops,drop_rate,abandoned", granularity="hour"))
    hours = {row["bucket"]: row for row in body["rows"]}
    # k1..k10 start in the 10:00 hour, k11 (11:00) and k13 (11:05) in the next.
    ten, eleven = DAY.replace(hour=10).isoformat(), DAY.replace(hour=11).isoformat()
    assert hours[ten] == {"bucket": ten, "drops": 3, "drop_rate": 0.333333, "abandoned": 2}
    assert hours[eleven] == {"bucket": eleven, "drops": 0, "drop_rate": 0.0, "abandoned": 0}
    days = flagged.metrics(**_day(metrics="machine_answers,dnc_marks", granularity="day"))
    assert days["rows"] == [
        {"bucket": DAY.isoformat(), "machine_answers": 2, "dnc_marks": 1},
    ]


def test_leaderboards_rank_by_the_flag_kpis(flagged: Pipeline) -> None:
    def ranks(**params: Any) -> list[tuple[int, str, Any]]:
        response = flagged.api.get("/v1/leaderboard", params=_day(**params))
        assert response.status_code == 200, response.text
        return [(r["rank"], r["agent_id"], r["value"]) for r in response.json()["rows"]]

    assert ranks(metric="callbacks_scheduled") == [(1, "a1", 2), (2, "a3", 1), (3, "a2", 0)]
    assert ranks(metric="drop_rate", min_volume=1) == [
        (1, "a2", 0.5),
        (2, "a1", 0.0),
        (2, "a3", 0.0),
    ]
    assert ranks(metric="machine_answers", team_id="T1") == [(1, "a2", 2), (2, "a1", 0)]
    # Volume of a ratio is its denominator: a3 has one inbound call, below 2.
    assert ranks(metric="abandon_rate", min_volume=2) == []


def test_dispositions_publish_the_table_beside_the_counts(flagged: Pipeline) -> None:
    response = flagged.api.get("/v1/dispositions", params=_day(group_by="campaign"))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["flags"][:3] == ["human_answered", "contact", "sale"]
    table = {(row["code"], row["campaign_id"]): row for row in body["table"]}
    on = {key: {f for f, v in row["flags"].items() if v} for key, row in table.items()}
    # VICIdial's oddities corrected; the file's code for every campaign; the override.
    assert on[("SALE", None)] == {"human_answered", "contact", "sale"}
    assert on[("AA", None)] == {"answering_machine"}
    assert on[("APPT", None)] == {"human_answered", "contact", "callback"}
    assert table[("APPT", None)]["name"] == "Appointment"
    assert on[("NI", None)] == {"human_answered", "contact", "not_interested"}
    assert on[("NI", "renewals")] == {"human_answered", "callback"}
    assert ("ZZZ", None) not in table

    rows = {row["campaign_id"]: row for row in body["rows"]}
    renewals = rows["renewals"]
    assert renewals["dispositions"] == {"APPT": 1, "NI": 1, "TIMEOT": 1, "ZZZ": 1}
    assert renewals["calls"] == 4
    codes = {c["code"]: c for c in renewals["codes"]}
    assert codes["ZZZ"] == {
        "code": "ZZZ",
        "calls": 1,
        "known": False,
        "name": None,
        "flags": dict.fromkeys(body["flags"], False),
    }
    assert codes["NI"]["name"] == "Not now"
    assert codes["NI"]["flags"]["callback"] and not codes["NI"]["flags"]["not_interested"]
    assert renewals["unknown_calls"] == 1
    assert {f: n for f, n in renewals["flag_calls"].items() if n} == {
        "human_answered": 3,  # NI, TIMEOT, APPT
        "contact": 1,  # APPT
        "callback": 2,  # NI here, APPT
        "drop": 1,  # TIMEOT
    }
    spring = rows["spring"]
    assert spring["dispositions"] == {"AA": 1, "APPT": 1, "DNC": 1, "DROP": 2, "NI": 1, "SALE": 1}

    # All campaigns in one row: each call counts with its own campaign's flags.
    total = flagged.api.get("/v1/dispositions", params=_day()).json()["rows"]
    assert len(total) == 1
    assert total[0]["calls"] == 11
    assert total[0]["dispositions"]["NI"] == 2
    flags = total[0]["flag_calls"]
    assert (flags["not_interested"], flags["callback"], flags["dnc"]) == (1, 3, 1)
    assert (flags["drop"], flags["answering_machine"], flags["sale"]) == (3, 1, 1)
    assert total[0]["unknown_calls"] == 1


def test_a_bad_dispositions_file_stops_the_service_at_start(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[codes]\nAPPT = ["callback"]\n\n[campaigns.x.codes]\nNI = ["nope"]\n')
    result = subprocess.run(
        [sys.executable, "-m", "services.cli", "api", "--port", "0"],
        cwd=REPO,
        env={"CALLBOARD_DISPOSITIONS_FILE": str(bad), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    # The message as printed may be wrapped to the terminal's width.
    printed = "".join((result.stderr + result.stdout).split())
    assert f"{bad},line5:code'NI'hasunknownflag'nope'" in printed


def test_dispositions_read_as_other_reads_with_a_keys_team_filter(
    make_pipeline: MakePipeline, dispositions_file: Path
) -> None:
    admin = "bootstrap-admin-key-for-the-tests-0123456789"
    pipeline = make_pipeline(
        CALLBOARD_DISPOSITIONS_FILE=str(dispositions_file), CALLBOARD_ADMIN_KEY=admin
    )
    pipeline.post(_floor())
    pipeline.wait_caught_up()
    created = pipeline.api.post(
        "/v1/admin/keys",
        json={"name": "lead T2", "scopes": ["read"], "team_ids": ["T2"]},
        headers={"Authorization": f"Bearer {admin}"},
    )
    assert created.status_code == 201, created.text
    lead = {"Authorization": f"Bearer {created.json()['key']}"}
    # A read key exists: the route needs one now.
    assert pipeline.api.get("/v1/dispositions", params=_day()).status_code == 401
    body = pipeline.api.get("/v1/dispositions", params=_day(), headers=lead).json()
    # T2's calls with a code: k10 TIMEOT, k11 ZZZ, k13 APPT.
    assert [(r["dispositions"], r["calls"]) for r in body["rows"]] == [
        ({"APPT": 1, "TIMEOT": 1, "ZZZ": 1}, 3)
    ]
    other = pipeline.api.get("/v1/dispositions", params=_day(team_id="T1"), headers=lead)
    assert other.status_code == 403
