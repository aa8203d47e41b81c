"""The published contract in docs/ says what the code does."""

from __future__ import annotations

import re
from pathlib import Path

from shared.kpis import ALL_KPI_KEYS, NAMES_EN, NAMES_ZH, NAMES_ZH_TW

DOCS = Path(__file__).resolve().parents[2] / "docs"


def _documented_keys() -> list[str]:
    """The key of every table row of docs/kpis.md whose first cell is a backticked key."""
    text = (DOCS / "kpis.md").read_text(encoding="utf-8")
    return re.findall(r"^\|\s*`([a-z_]+)`\s*\|", text, flags=re.MULTILINE)


def test_kpis_md_lists_exactly_the_keys_of_the_code() -> None:
    documented = _documented_keys()
    assert len(documented) == len(set(documented)), "a key is documented twice"
    assert set(documented) == set(ALL_KPI_KEYS)


def test_kpis_md_gives_each_key_a_chinese_name_formula_denominator_and_null_rule() -> None:
    text = (DOCS / "kpis.md").read_text(encoding="utf-8")
    for key in _documented_keys():
        row = re.search(rf"^\|\s*`{key}`\s*\|(.*)\|\s*$", text, flags=re.MULTILINE)
        assert row is not None
        cells = [c.strip() for c in row.group(1).split("|")]
        name_zh, formula, denominator, null_rule = cells
        assert re.search(r"[\u4e00-\u9fff]", name_zh), key
        assert formula and denominator and null_rule, key


def test_kpis_md_names_each_key_as_the_code_does() -> None:
    text = (DOCS / "kpis.md").read_text(encoding="utf-8")
    assert set(NAMES_ZH) == set(NAMES_ZH_TW) == set(NAMES_EN) == set(ALL_KPI_KEYS)
    for key, name_zh in NAMES_ZH.items():
        row = re.search(rf"^\|\s*`{key}`\s*\|([^|]*)\|", text, flags=re.MULTILINE)
        if row is not None:  # a missing key is the first test's failure
            assert row.group(1).strip() == name_zh, key


def test_architecture_md_names_only_paths_that_exist() -> None:
    text = (DOCS / "architecture.md").read_text(encoding="utf-8")
    repo = DOCS.parent
    paths = {
        token
        for token in re.findall(r"`([A-Za-z_./]+)`", text)
        # Routes start with "/"; the local stack's state folder exists only once it ran.
        if "/" in token and not token.startswith(("/", ".callboard"))
    }
    assert "services/ingest/adapters/" in paths and "shared/models.py" in paths
    missing = sorted(p for p in paths if not (repo / p).exists() and not (DOCS / p).exists())
    assert missing == []
