"""The vendors' documented samples through each adapter's translation.

Every expected event is worked out by hand from the sample and the vendor's documentation
(``../shared/reference/dialers.md``): times converted by hand, lead ids as the documented
HMAC-SHA256 of the number under a test secret.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path
from urllib.parse import parse_qsl, quote

import pytest

from services.ingest.adapters import asterisk, connect, freeswitch, twilio, vicidial
from services.ingest.adapters.common import AdapterContext, LeadSecretMissing, TranslationError
from shared.events import validate_event

SAMPLES = Path(__file__).resolve().parents[1] / "samples"
SECRET = "a-test-lead-id-secret-of-some-length"
UTC_CONTEXT = AdapterContext.create("UTC", SECRET)


def lead(system: str, number: str) -> str:
    return f"{system}:" + hmac.new(SECRET.encode(), number.encode(), hashlib.sha256).hexdigest()


def assert_valid(events: list[dict[str, object]]) -> None:
    for event in events:
        outcome = validate_event(event)
        assert not isinstance(outcome, list), (event, outcome)


def form(name: str) -> dict[str, str]:
    return dict(parse_qsl((SAMPLES / name).read_text().strip(), keep_blank_values=True))


# Twilio ------------------------------------------------------------------------------------


def test_twilio_t1_completed_callback() -> None:
    events = twilio.translate(form("twilio_t1.txt"), UTC_CONTEXT)
    # Timestamp 09:53:19 UTC minus CallDuration 49 s (Duration=1 is minutes: ignored).
    assert events == [
        {
            "source": "twilio",
            "event_id": "twilio:CAbe982f58915a2def4cf7aaa1f1766236:completed:3",
            "type": "call.completed",
            "call_id": "CAbe982f58915a2def4cf7aaa1f1766236",
            "lead_id": lead("twilio", "+551135892112"),
            "occurred_at": "2018-03-25T09:52:30+00:00",
            "direction": "outbound",
            "answered": True,
            "answered_by": "human",
            "contact_reached": True,
            "talk_seconds": 49,
        }
    ]
    assert_valid(events)


def test_twilio_t2_busy_callback_with_a_truncated_offset() -> None:
    # The developer's copy lost the last digit of "+0000"; the time is still read as UTC.
    events = twilio.translate(form("twilio_t2.txt"), UTC_CONTEXT)
    assert events == [
        {
            "source": "twilio",
            "event_id": "twilio:CA35c037c9b8bb40c5002e2fe8cbbeecd9:busy:2",
            "type": "call.completed",
            "call_id": "CA35c037c9b8bb40c5002e2fe8cbbeecd9",
            "lead_id": lead("twilio", "+260967301606"),
            "occurred_at": "2022-05-07T14:30:14+00:00",
            "direction": "outbound",
            "answered": False,
            "contact_reached": False,
            "talk_seconds": 0,
            "disposition": "B",
        }
    ]
    assert_valid(events)


def test_twilio_progress_events_child_leg_and_machine() -> None:
    base = {
        "CallSid": "CAchild",
        "ParentCallSid": "CAparent",
        "Direction": "outbound-dial",
        "To": "+15005550006",
        "From": "+15005550001",
        "agent_id": "a-7",
        "team_id": "t-1",
        "campaign_id": "spring",
    }
    ringing = twilio.translate(
        {
            **base,
            "CallStatus": "ringing",
            "SequenceNumber": "1",
            "Timestamp": "Mon, 02 Nov 2026 01:00:00 +0000",
        },
        UTC_CONTEXT,
    )
    assert ringing == [
        {
            "source": "twilio",
            "event_id": "twilio:CAchild:ringing:1",
            "type": "call.started",
            "call_id": "CAparent",
            "agent_id": "a-7",
            "team_id": "t-1",
            "campaign_id": "spring",
            "lead_id": lead("twilio", "+15005550006"),
            "occurred_at": "2026-11-02T01:00:00+00:00",
            # No direction: a child leg is always outbound-dial; its parent says which way
            # the customer call went.
        }
    ]
    answered = twilio.translate(
        {
            **base,
            "CallStatus": "in-progress",
            "SequenceNumber": "2",
            "AnsweredBy": "machine_end_beep",
            "Timestamp": "Mon, 02 Nov 2026 01:00:09 +0000",
        },
        UTC_CONTEXT,
    )
    assert answered[0]["type"] == "call.answered"
    assert answered[0]["answered_by"] == "machine"
    assert answered[0]["contact_reached"] is False
    fax = twilio.translate(
        {
            **base,
            "CallStatus": "completed",
            "CallDuration": "12",
            "AnsweredBy": "fax",
            "Timestamp": "Mon, 02 Nov 2026 01:00:21 +0000",
        },
        UTC_CONTEXT,
    )
    assert fax[0]["answered"] is True
    assert fax[0]["contact_reached"] is False
    assert fax[0]["occurred_at"] == "2026-11-02T01:00:09+00:00"
    assert fax[0]["event_id"] == "twilio:CAchild:completed:-"
    assert "direction" not in fax[0]


def test_twilio_inbound_lead_is_the_caller_and_lead_id_parameter_wins() -> None:
    params = {
        "CallSid": "CA1",
        "CallStatus": "no-answer",
        "Direction": "inbound",
        "From": "+8613812345678",
        "To": "+861010000000",
        "Timestamp": "Mon, 02 Nov 2026 01:00:00 +0000",
    }
    (event,) = twilio.translate(params, UTC_CONTEXT)
    assert event["direction"] == "inbound"
    assert event["lead_id"] == lead("twilio", "+8613812345678")
    assert event["disposition"] == "NA"
    (event,) = twilio.translate({**params, "lead_id": "L-9"}, UTC_CONTEXT)
    assert event["lead_id"] == "L-9"


def test_twilio_missing_fields_and_secret() -> None:
    with pytest.raises(TranslationError) as missing:
        twilio.translate({"CallStatus": "completed"}, UTC_CONTEXT)
    assert missing.value.field == "CallSid"
    no_secret = AdapterContext.create("UTC", None)
    with pytest.raises(LeadSecretMissing) as refused:
        twilio.translate(form("twilio_t1.txt"), no_secret)
    assert "CALLBOARD_LEAD_ID_SECRET" in str(refused.value)
    assert "5511" not in str(refused.value)


# VICIdial ----------------------------------------------------------------------------------


def test_vicidial_documentation_example_as_a_dispo_url() -> None:
    # CALL_URL_FEATURES.txt: leadID=321452&listID=101&dispo=NI&talk_time=214, with the
    # variables a Callboard template adds (uniqueid, epoch, user, user_group, campaign).
    params = {
        "lead_id": "321452",
        "dispo": "NI",
        "talk_time": "214",
        "uniqueid": "1706412022.63",
        "epoch": "1762045200",
        "user": "6666",
        "user_group": "AGENTS",
        "campaign": "TESTCAMP",
        "phone_number": "7275551212",
    }
    events = vicidial.translate("dispo", params, UTC_CONTEXT)
    who = {"agent_id": "6666", "team_id": "AGENTS", "campaign_id": "TESTCAMP", "lead_id": "321452"}
    # epoch 1762045200 = 2025-11-02T01:00:00Z; the talk began 214 s before.
    assert events == [
        {
            "source": "vicidial",
            "call_id": "1706412022.63",
            **who,
            "event_id": "vicidial:1706412022.63:dispo:1762045200:started",
            "type": "call.started",
            "occurred_at": "2025-11-02T00:56:26+00:00",
            "direction": "outbound",
        },
        {
            "source": "vicidial",
            "call_id": "1706412022.63",
            **who,
            "event_id": "vicidial:1706412022.63:dispo:1762045200",
            "type": "call.completed",
            "occurred_at": "2025-11-02T01:00:00+00:00",
            "direction": "outbound",
            "answered": True,
            "answered_by": "human",
            "contact_reached": True,
            "talk_seconds": 214,
            "disposition": "NI",
        },
    ]
    assert "7275551212" not in json.dumps(events)
    assert_valid(events)


def test_vicidial_sale_drop_and_unknown_code() -> None:
    common = {
        "uniqueid": "1762.1",
        "epoch": "1762045200",
        "lead_id": "88",
        "user": "a1",
        "campaign": "C1",
    }
    sale = vicidial.translate(
        "dispo", {**common, "dispo": "SALE", "talk_time": "300", "amount": "1999.50"}, UTC_CONTEXT
    )
    assert sale[-1] == {
        "source": "vicidial",
        "event_id": "vicidial:1762.1:sale",
        "type": "sale.closed",
        "occurred_at": "2025-11-02T01:00:00+00:00",
        "order_id": "vicidial:1762.1",
        "amount": "1999.50",
        "agent_id": "a1",
        "campaign_id": "C1",
        "lead_id": "88",
    }
    drop = vicidial.translate("no-agent", {**common, "user": "VDAD", "status": "DROP"}, UTC_CONTEXT)
    assert "agent_id" not in drop[1]
    assert drop[1]["answered"] is True and drop[1]["disposition"] == "DROP"
    inbound = vicidial.translate("no-agent", {**common, "status": "XDROP"}, UTC_CONTEXT)
    assert inbound[1]["direction"] == "inbound"
    unknown = vicidial.translate(
        "dispo", {**common, "dispo": "ZZTOP", "talk_time": "30"}, UTC_CONTEXT
    )
    assert unknown[1]["disposition"] == "ZZTOP"
    assert unknown[1]["answered"] is True and unknown[1]["contact_reached"] is False
    machine = vicidial.translate("no-agent", {**common, "status": "AA"}, UTC_CONTEXT)
    assert machine[1]["answered_by"] == "machine"


def test_vicidial_sqldate_in_the_source_zone() -> None:
    context = AdapterContext.create("America/New_York", SECRET)
    events = vicidial.translate(
        "start", {"uniqueid": "9.1", "SQLdate": "2026-07-01 09:30:00", "user": "a"}, context
    )
    assert events[0]["occurred_at"] == "2026-07-01T13:30:00+00:00"
    with pytest.raises(TranslationError) as missing:
        vicidial.translate("dispo", {"epoch": "1", "dispo": "NI"}, context)
    assert missing.value.field == "uniqueid"


# Asterisk ----------------------------------------------------------------------------------


def test_asterisk_a1_bridged_leg_and_dial_attempts() -> None:
    lines = (SAMPLES / "asterisk_a1.csv").read_text().splitlines()
    roster = asterisk.Roster({"301": asterisk.RosterEntry("a-301", "t-1")})
    ivr = asterisk.translate(lines[0], UTC_CONTEXT, roster)
    # ANSWERED by the PBX with no second party: not a connect.
    assert ivr[1]["answered"] is False
    assert ivr[1]["call_id"] == "1706368044.0"
    bridged = asterisk.translate(lines[5], UTC_CONTEXT, roster)
    caller = lead("asterisk", "214943")
    assert bridged == [
        {
            "source": "asterisk",
            "call_id": "1706412022.63",
            "agent_id": "a-301",
            "team_id": "t-1",
            "lead_id": caller,
            "event_id": "asterisk:1706412022.63:start:1706412022.63:61",
            "type": "call.started",
            "occurred_at": "2024-01-28T03:20:27+00:00",
            "direction": "inbound",
        },
        {
            "source": "asterisk",
            "call_id": "1706412022.63",
            "agent_id": "a-301",
            "team_id": "t-1",
            "lead_id": caller,
            "event_id": "asterisk:1706412022.63:cdr:2:1706412022.63:61",
            "type": "call.completed",
            "occurred_at": "2024-01-28T03:20:27+00:00",
            "direction": "inbound",
            "answered": True,
            "answered_by": "human",
            "contact_reached": True,
            "talk_seconds": 23,
        },
    ]
    attempt = asterisk.translate(lines[3], UTC_CONTEXT, roster)
    assert attempt[1]["answered"] is False
    assert attempt[1]["disposition"] == "NA"
    assert attempt[1]["occurred_at"] == "2024-01-28T03:20:22+00:00"
    # The answered leg's id sorts after every other CDR of the call at the same second.
    hop = asterisk.translate(lines[1], UTC_CONTEXT, roster)
    assert hop[1]["answered"] is False
    assert bridged[1]["event_id"] > hop[1]["event_id"]
    for line in lines:
        assert_valid(asterisk.translate(line, UTC_CONTEXT, roster))


def test_asterisk_a2_cdr_custom_layout_and_local_time() -> None:
    lines = (SAMPLES / "asterisk_a2.csv").read_text().splitlines()
    roster = asterisk.Roster({"client1": asterisk.RosterEntry("a-1")})
    shanghai = AdapterContext.create("Asia/Shanghai", SECRET)
    first = asterisk.translate(lines[0], shanghai, roster)
    # 01:51:32 and 01:51:50 in Shanghai (UTC+8) are 17:51:32 and 17:51:50 the day before.
    assert first[0]["occurred_at"] == "2023-07-25T17:51:32+00:00"
    assert first[1] == {
        "source": "asterisk",
        "call_id": "1690325492.2",
        "agent_id": "a-1",
        "lead_id": lead("asterisk", "6789"),
        "event_id": "asterisk:1690325492.2:cdr:2:1690325492.2:2",
        "type": "call.completed",
        "occurred_at": "2023-07-25T17:51:50+00:00",
        "direction": "outbound",
        "answered": True,
        "answered_by": "human",
        "contact_reached": True,
        "talk_seconds": 13,
    }
    second = asterisk.translate(lines[1], shanghai, roster)
    assert second[1]["direction"] == "inbound"
    assert second[1]["answered"] is False and second[1]["disposition"] == "NA"
    gmt = asterisk.translate(lines[0], shanghai, asterisk.Roster(roster.extensions, usegmtime=True))
    assert gmt[0]["occurred_at"] == "2023-07-26T01:51:32+00:00"


def test_asterisk_short_line_is_rejected() -> None:
    with pytest.raises(TranslationError) as short:
        asterisk.translate('"","1","2","ctx"', UTC_CONTEXT, asterisk.Roster())
    assert "4 columns" in str(short.value)


# FreeSWITCH --------------------------------------------------------------------------------


def test_freeswitch_f1_a_leg() -> None:
    document = json.loads((SAMPLES / "freeswitch_f1.json").read_text())
    events = freeswitch.translate(document, UTC_CONTEXT)
    # start_epoch 1375609854 = 2013-08-04T09:50:54Z (start_stamp 11:50:54 at UTC+2);
    # bridged (bridge_uuid) with billsec 4 and no bridge_epoch in the excerpt: talk 4.
    assert events == [
        {
            "source": "freeswitch",
            "event_id": "freeswitch:01df56f4-d99a-4ef6-b7fe-b924b2415b7f:cdr",
            "type": "call.completed",
            "call_id": "01df56f4-d99a-4ef6-b7fe-b924b2415b7f",
            "occurred_at": "2013-08-04T09:50:54+00:00",
            "direction": "outbound",
            "answered": True,
            "answered_by": "human",
            "contact_reached": True,
            "talk_seconds": 4,
        }
    ]
    # With encode-values (the default) every value arrives URL-encoded: the same events.
    encoded = {
        **document,
        "variables": {k: quote(v, safe="") for k, v in document["variables"].items()},
    }
    assert freeswitch.translate(encoded, UTC_CONTEXT) == events


def test_freeswitch_b_leg_joins_its_a_leg_and_busy_a_leg() -> None:
    b_leg = {
        "variables": {
            "uuid": "bbbb",
            "originating_leg_uuid": "aaaa",
            "start_epoch": "1762045200",
            "answer_epoch": "1762045210",
            "end_epoch": "1762045300",
            "billsec": "90",
            "destination_number": "%2B8613812345678",
            "callboard_agent_id": "a-3",
        }
    }
    (event,) = freeswitch.translate(b_leg, UTC_CONTEXT)
    assert event["call_id"] == "aaaa"
    assert event["talk_seconds"] == 90 and event["answered"] is True
    assert event["lead_id"] == lead("freeswitch", "+8613812345678")
    busy = {
        "variables": {
            "uuid": "cccc",
            "start_epoch": "1762045200",
            "end_epoch": "1762045205",
            "billsec": "0",
            "hangup_cause": "NORMAL_CLEARING",
            "originate_disposition": "USER_BUSY",
            "callboard_lead_id": "L1",
        }
    }
    (event,) = freeswitch.translate(busy, UTC_CONTEXT)
    assert event["answered"] is False and event["disposition"] == "B"


# Amazon Connect ----------------------------------------------------------------------------


def test_connect_c1_and_its_later_copy_c2() -> None:
    c1 = json.loads((SAMPLES / "connect_c1.json").read_text())
    c2 = {
        **c1,
        "Attributes": {**c1["Attributes"], "greetingPlayed": "false"},
        "LastUpdateTimestamp": "2022-01-11T03:41:32Z",
    }
    first = connect.translate(c1, UTC_CONTEXT)
    expected = {
        "source": "connect",
        "call_id": "6fe40d2a-1a89-4d73-bfcf-5d9c33894f47",
        "agent_id": "Steve.Lusk",
        "campaign_id": "TCC Refrig AC LLA",
        "lead_id": lead("connect", "+190011112222"),
        "event_id": "connect:6fe40d2a-1a89-4d73-bfcf-5d9c33894f47:ctr:20220105T174835.000000Z",
        "type": "call.completed",
        "occurred_at": "2022-01-05T17:12:59+00:00",
        "direction": "inbound",
        "answered": True,
        "answered_by": "human",
        "contact_reached": True,
        "talk_seconds": 239,
        "wrap_seconds": 5,
    }
    assert first == [expected]
    second = connect.translate(c2, UTC_CONTEXT)
    assert second == [
        {
            **expected,
            "event_id": "connect:6fe40d2a-1a89-4d73-bfcf-5d9c33894f47:ctr:20220111T034132.000000Z",
        }
    ]
    # Same occurred_at: the later copy's greater id is what makes it win the merge.
    assert second[0]["event_id"] > first[0]["event_id"]
    assert "+1900" not in json.dumps(first)
    assert_valid(first)


def test_connect_abandoned_outbound_drop_machine_and_sale() -> None:
    base = {
        "ContactId": "c-1",
        "Channel": "VOICE",
        "InitiationTimestamp": "2026-11-02T01:00:00Z",
        "LastUpdateTimestamp": "2026-11-02T01:05:00Z",
        "CustomerEndpoint": {"Address": "+8613800000000"},
    }
    (abandoned,) = connect.translate(
        {**base, "InitiationMethod": "INBOUND", "Queue": {"Name": "Q"}, "Agent": None},
        UTC_CONTEXT,
    )
    assert abandoned["direction"] == "inbound" and abandoned["answered"] is False
    (drop,) = connect.translate(
        {
            **base,
            "InitiationMethod": "OUTBOUND",
            "ConnectedToSystemTimestamp": "2026-11-02T01:00:05Z",
        },
        UTC_CONTEXT,
    )
    assert drop["answered"] is True and "agent_id" not in drop
    (machine,) = connect.translate(
        {
            **base,
            "InitiationMethod": "API",
            "ConnectedToSystemTimestamp": "2026-11-02T01:00:05Z",
            "AnsweringMachineDetectionStatus": "VOICEMAIL_BEEP",
        },
        UTC_CONTEXT,
    )
    assert machine["answered_by"] == "machine" and machine["contact_reached"] is False
    sale = connect.translate(
        {
            **base,
            "InitiationMethod": "OUTBOUND",
            "DisconnectTimestamp": "2026-11-02T01:04:00Z",
            "ConnectedToSystemTimestamp": "2026-11-02T01:00:05Z",
            "Agent": {"Username": "lee@example.com", "AgentInteractionDuration": 200},
            "Attributes": {"disposition": "SALE", "amount": "120.00", "team_id": "t-9"},
        },
        UTC_CONTEXT,
    )
    assert sale[0]["agent_id"] == "lee"
    assert sale[1] == {
        "source": "connect",
        "agent_id": "lee",
        "team_id": "t-9",
        "lead_id": lead("connect", "+8613800000000"),
        "event_id": "connect:c-1:sale:20261102T010500.000000Z",
        "type": "sale.closed",
        "occurred_at": "2026-11-02T01:04:00+00:00",
        "order_id": "connect:c-1",
        "amount": "120.00",
    }
    assert connect.translate({**base, "Channel": "CHAT"}, UTC_CONTEXT) == []
