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
from shared.dispositions import DEFAULT_TABLE, parse_dispositions
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
    who = {
        "agent_id": "6666",
        "team_id": "AGENTS",
        "campaign_id": "TESTCAMP",
        "lead_id": "vicidial:321452",
    }
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
        "lead_id": "vicidial:88",
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


def test_connect_methods_an_unanswered_dial_and_a_transfer_no_agent_took() -> None:
    base = {
        "ContactId": "c-2",
        "Channel": "VOICE",
        "InitiationTimestamp": "2026-11-02T02:00:00Z",
        "LastUpdateTimestamp": "2026-11-02T02:05:00Z",
        "CustomerEndpoint": {"Address": "+8613800000001"},
    }
    agent = {
        "Username": "kim",
        "ConnectedToAgentTimestamp": "2026-11-02T02:00:00Z",
        "AgentInteractionDuration": 28,
    }
    # An agent dialled and the customer never answered: the agent's interaction runs from
    # the dial, but the call was not answered, so it is neither a connect nor a contact.
    (unanswered,) = connect.translate(
        {
            **base,
            "InitiationMethod": "OUTBOUND",
            "ConnectedToSystemTimestamp": None,
            "Agent": agent,
        },
        UTC_CONTEXT,
    )
    assert (unanswered["direction"], unanswered["answered"]) == ("outbound", False)
    assert unanswered["contact_reached"] is False
    # A web or in-app call is a call to the centre; one nobody took is abandoned, not a drop.
    (web,) = connect.translate(
        {**base, "InitiationMethod": "WEBRTC_API", "Queue": {"Name": "Q"}, "Agent": None},
        UTC_CONTEXT,
    )
    assert (web["direction"], web["answered"]) == ("inbound", False)
    # A supervisor listening in is no call of its own.
    assert (
        connect.translate({**base, "InitiationMethod": "MONITOR", "Agent": agent}, UTC_CONTEXT)
        == []
    )
    # A transfer the caller left in the second queue leaves the first contact's talk alone;
    # one an agent took carries its talk and agent to the first contact's call.
    transfer = {
        **base,
        "ContactId": "c-3",
        "InitialContactId": "c-2",
        "InitiationMethod": "TRANSFER",
        "InitiationTimestamp": "2026-11-02T02:04:00Z",
    }
    assert connect.translate({**transfer, "Agent": None}, UTC_CONTEXT) == []
    taken = connect.translate({**transfer, "Agent": agent}, UTC_CONTEXT)
    assert {e["type"] for e in taken} == {"call.ended", "call.answered"}
    assert {e["call_id"] for e in taken} == {unanswered["call_id"]}
    assert_valid(taken)


def test_vicidial_placeholders_left_unfilled_row_numbers_and_code_case() -> None:
    # The No Agent Call URL as VICIdial sends it: SQLdate filled ("+" for the space), epoch
    # and a custom field left as their placeholders; a list row number that is also a valid
    # phone number's digits.
    params = dict(
        parse_qsl(
            "uniqueid=1762045200.77&lead_id=2396437&campaign=C1&SQLdate=2025-11-02+09:00:00"
            "&epoch=--A--epoch--B--&status=DROP&user_group=--A--user_group--B--"
        )
    )
    context = AdapterContext.create("Asia/Shanghai", SECRET)
    events = vicidial.translate("no-agent", params, context)
    assert [e["occurred_at"] for e in events] == ["2025-11-02T01:00:00+00:00"] * 2
    assert {e["lead_id"] for e in events} == {"vicidial:2396437"}
    assert all("team_id" not in e for e in events)
    assert_valid(events)
    # A sale whose amount field the template names but the lead does not fill: amount 0.
    sale = vicidial.translate(
        "dispo",
        {
            **params,
            "epoch": "1762045200",
            "user": "a1",
            "dispo": "SALE",
            "talk_time": "60",
            "amount": "--A--amount--B--",
        },
        context,
    )
    assert sale[-1]["type"] == "sale.closed" and sale[-1]["amount"] == "0"
    # A campaign's own code in lower case, as its dispositions file writes it.
    rows = parse_dispositions('[campaigns.C1.codes]\nAppt = ["human_answered", "contact"]\n')
    mixed = AdapterContext.create("UTC", SECRET, DEFAULT_TABLE.with_rows(rows))
    (_, completed) = vicidial.translate(
        "dispo", {**params, "epoch": "1762045200", "dispo": "Appt", "talk_time": "30"}, mixed
    )
    assert (completed["disposition"], completed["contact_reached"]) == ("Appt", True)
    (_, upper) = vicidial.translate(
        "dispo", {**params, "epoch": "1762045200", "dispo": "ni", "talk_time": "30"}, mixed
    )
    assert upper["disposition"] == "NI"


def test_freeswitch_a_lost_fork_and_mod_callcenter_agent_legs() -> None:
    def leg(uuid: str, **values: str) -> dict[str, dict[str, str]]:
        return {"variables": {"uuid": uuid, "start_epoch": "1762045200", **values}}

    # An A-leg forked to two phones at once: one answered, the other lost the race. The legs
    # start in the same second; whatever order the three CDRs merge in, the call is the
    # answered fork's.
    a_leg = leg(
        "aaaa",
        bridge_epoch="1762045205",
        end_epoch="1762045265",
        billsec="65",
        bleg_uuid="bbbb",
        callboard_lead_id="L1",
    )
    won = leg(
        "bbbb",
        originating_leg_uuid="aaaa",
        answer_epoch="1762045205",
        end_epoch="1762045265",
        billsec="60",
        callboard_lead_id="L1",
    )
    lost = leg(
        "zzzz",
        originating_leg_uuid="aaaa",
        end_epoch="1762045205",
        billsec="0",
        hangup_cause="LOSE_RACE",
        callboard_lead_id="L1",
    )
    assert freeswitch.translate(lost, UTC_CONTEXT) == []
    merged = [e for d in (a_leg, won, lost) for e in freeswitch.translate(d, UTC_CONTEXT)]
    latest = max(merged, key=lambda e: (e["occurred_at"], e["event_id"]))
    assert (latest["answered"], latest["talk_seconds"]) == (True, 60)

    # mod_callcenter: the caller's leg queued and taken by agent 1000@default; the agent legs
    # are originated on their own, naming the caller's leg in cc_member_session_uuid.
    member = leg(
        "mmmm",
        cc_side="member",
        cc_agent="1000@default",
        callboard_direction="inbound",
        caller_id_number="%2B8613812345678",
        bridge_epoch="1762045230",
        end_epoch="1762045330",
        billsec="130",
    )
    (caller,) = freeswitch.translate(member, UTC_CONTEXT)
    assert (caller["call_id"], caller["agent_id"]) == ("mmmm", "1000")
    assert caller["lead_id"] == lead("freeswitch", "+8613812345678")
    taken = leg(
        "g1",
        cc_side="agent",
        cc_agent="1000@default",
        cc_member_session_uuid="mmmm",
        callboard_direction="inbound",
        caller_id_number="1000",
        answer_epoch="1762045230",
        end_epoch="1762045330",
        billsec="100",
    )
    (agent,) = freeswitch.translate(taken, UTC_CONTEXT)
    assert (agent["call_id"], agent["agent_id"], agent["talk_seconds"]) == ("mmmm", "1000", 100)
    assert "lead_id" not in agent  # the agent's extension is no lead
    rung = leg("g2", cc_side="agent", cc_agent="1001@default", cc_member_session_uuid="mmmm")
    assert freeswitch.translate({**rung}, UTC_CONTEXT) == []
    assert_valid([caller, agent])


def _cdr_line(*, extra: list[str], linked: list[str], **fields: str) -> str:
    """A cdr_csv line: the 16 fixed columns, the optional ones (uniqueid/userfield), then
    newcdrcolumns' (peeraccount, linkedid, sequence) when given."""
    base = {
        "accountcode": "",
        "src": "1001",
        "dst": "13800001111",
        "dcontext": "from-internal",
        "clid": '"Agent" <1001>',
        "channel": "SIP/1001-00000001",
        "dstchannel": "SIP/trunk-00000002",
        "lastapp": "Dial",
        "lastdata": "SIP/trunk/13800001111",
        "start": "2026-11-02 09:00:00",
        "answer": "2026-11-02 09:00:05",
        "end": "2026-11-02 09:01:05",
        "duration": "65",
        "billsec": "60",
        "disposition": "ANSWERED",
        "amaflags": "DOCUMENTATION",
    }
    base.update(fields)
    cells = [*base.values(), *extra, *linked]
    return ",".join('"' + c.replace('"', '""') + '"' for c in cells)


def test_asterisk_every_cdr_csv_column_set_finds_the_call() -> None:
    roster = asterisk.Roster({"1001": asterisk.RosterEntry("a-1")})
    linked = ["", "1762045200.7", "12"]
    for extra in ([], ["1762045200.9"], ["my-userfield"], ["1762045200.9", "my-userfield"]):
        line = _cdr_line(extra=extra, linked=linked)
        events = asterisk.translate(line, UTC_CONTEXT, roster)
        assert {e["call_id"] for e in events} == {"1762045200.7"}, extra
        unique = extra[0] if extra and extra[0][0].isdigit() else ""
        assert events[1]["event_id"] == f"asterisk:1762045200.7:cdr:2:{unique}:12", extra
    # Without newcdrcolumns the unique id is the call.
    (started, _) = asterisk.translate(
        _cdr_line(extra=["1762045200.9", "u"], linked=[]), UTC_CONTEXT, roster
    )
    assert started["call_id"] == "1762045200.9"


def test_asterisk_a_conversation_then_a_transfer_nobody_answered() -> None:
    # The Alice-Bob conversation (answered, 50 s), then Bob transfers Alice to a phone that
    # rings out, and to voicemail (answered by the PBX, no second party): one call, answered,
    # its talk the conversation's, whatever order the CDRs merge in.
    roster = asterisk.Roster({"1001": asterisk.RosterEntry("a-1")})
    linked = ["", "1793610000.7"]
    talk = _cdr_line(
        extra=["1793610000.7", ""],
        linked=[*linked, "1"],
        start="2026-11-02 09:00:00",
        answer="2026-11-02 09:00:05",
        end="2026-11-02 09:00:55",
        billsec="50",
    )
    rang = _cdr_line(
        extra=["1793610000.12", ""],
        linked=[*linked, "2"],
        channel="SIP/1001-00000001",
        dstchannel="SIP/1002-00000003",
        start="2026-11-02 09:00:55",
        answer="",
        end="2026-11-02 09:01:20",
        billsec="0",
        disposition="NO ANSWER",
    )
    voicemail = _cdr_line(
        extra=["1793610000.12", ""],
        linked=[*linked, "3"],
        dstchannel="",
        lastapp="VoiceMail",
        start="2026-11-02 09:01:20",
        answer="2026-11-02 09:01:20",
        end="2026-11-02 09:01:50",
        billsec="30",
    )
    events = [
        e for line in (rang, voicemail, talk) for e in asterisk.translate(line, UTC_CONTEXT, roster)
    ]
    assert_valid(events)
    completed = [e for e in events if e["type"] == "call.completed"]
    latest = max(completed, key=lambda e: (e["occurred_at"], e["event_id"]))
    assert (latest["answered"], latest["talk_seconds"]) == (True, 50)
    # The call still begins when its first channel was made.
    assert min(e["occurred_at"] for e in events) == "2026-11-02T09:00:00+00:00"
