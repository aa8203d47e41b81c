"""The disposition table: VICIdial's defaults as corrected, a deployment's file, bad files."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from shared.dispositions import DEFAULT_TABLE, DispositionsFileError, Flag, load_dispositions
from shared.settings import CommonSettings

F = Flag


def test_the_default_table_is_vicidials_statuses_corrected() -> None:
    # As VICIdial ships them.
    assert DEFAULT_TABLE.flags("NI") == {F.human_answered, F.contact, F.not_interested}
    assert DEFAULT_TABLE.flags("CALLBK") == {F.human_answered, F.contact, F.callback}
    assert DEFAULT_TABLE.flags("DNC") == {F.human_answered, F.dnc}
    assert DEFAULT_TABLE.flags("ADC") == {F.unworkable}
    assert DEFAULT_TABLE.flags("A") == {F.answering_machine}
    assert DEFAULT_TABLE.flags("NA") == frozenset()
    # Corrected: SALE is a contact, AA an answering machine; drops carry the drop flag.
    assert DEFAULT_TABLE.flags("SALE") == {F.human_answered, F.sale, F.contact}
    assert DEFAULT_TABLE.flags("AA") == {F.answering_machine}
    assert DEFAULT_TABLE.flags("DROP") == {F.human_answered, F.drop}
    assert DEFAULT_TABLE.flags("TIMEOT") == {F.human_answered, F.drop}
    # Unknown codes: no flags, and said to be unknown; codes are case-sensitive as VICIdial's.
    assert DEFAULT_TABLE.flags("ZZZ") == frozenset()
    assert not DEFAULT_TABLE.known("ZZZ") and not DEFAULT_TABLE.known("sale")
    assert DEFAULT_TABLE.known("SALE", "any-campaign")
    assert load_dispositions(None) is DEFAULT_TABLE


def test_a_file_adds_codes_and_overrides_them_per_campaign(tmp_path: Path) -> None:
    path = tmp_path / "d.toml"
    path.write_text(
        """
[codes]
APPT = ["human_answered", "contact", "callback"]
SALE = { name = "Sold", flags = ["human_answered", "contact", "sale"] }

[campaigns."renewals-q4".codes]
NI = ["human_answered", "not_interested"]
"WAIT 1" = []
""",
        encoding="utf-8",
    )
    table = load_dispositions(path)
    assert table.flags("APPT") == {F.human_answered, F.contact, F.callback}
    assert table.flags("APPT", "renewals-q4") == table.flags("APPT")
    assert table.name("SALE") == "Sold"
    # An override without a name keeps the default's; a new code without one is its code.
    assert table.name("NI", "renewals-q4") == "Not Interested"
    assert table.name("APPT") == "APPT"
    # The campaign's own NI wins there, and only there; its flags replace, not merge.
    assert table.flags("NI", "renewals-q4") == {F.human_answered, F.not_interested}
    assert table.flags("NI", "spring") == {F.human_answered, F.contact, F.not_interested}
    assert table.known("WAIT 1", "renewals-q4") and not table.known("WAIT 1")
    rows = [(r.code, r.campaign_id) for r in table.codes()]
    assert rows[-2:] == [("NI", "renewals-q4"), ("WAIT 1", "renewals-q4")]
    assert ("APPT", None) in rows and len(rows) == len(DEFAULT_TABLE.codes()) + 3


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[codes]\nA1 = ["sale"]\nB2 = ["sael"]\n', "line 3: code 'B2' has unknown flag 'sael'"),
        ('[codes]\nA1 = ["sale"\n', "not valid TOML"),
        ("[codes]\nA1 = 3\n", "line 2: code 'A1' must be a list of flags"),
        ('[codes]\nA1 = { flags = ["sale"], colour = "red" }\n', "unknown keys ['colour']"),
        ('[code]\nA1 = ["sale"]\n', "unknown top-level keys ['code']"),
        (
            '[codes]\nNI = ["sale"]\n[campaigns.c1.codes]\nNI = ["bad"]\n',
            "line 4: code 'NI' has unknown flag 'bad'",
        ),
        ('[codes]\n"" = ["sale"]\n', "code '' must be 1 to 32 printable characters"),
    ],
)
def test_a_bad_file_is_refused_naming_the_line_and_code(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(DispositionsFileError) as caught:
        load_dispositions(path)
    assert message in str(caught.value)
    assert str(path) in str(caught.value)


def test_the_setting_refuses_a_bad_or_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="cannot be read"):
        CommonSettings(dispositions_file=tmp_path / "missing.toml")
    good = tmp_path / "good.toml"
    good.write_text('[codes]\nAPPT = ["callback"]\n', encoding="utf-8")
    assert CommonSettings(dispositions_file=good).dispositions_file == good
