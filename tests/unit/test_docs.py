"""The published contract in docs/ says what the code does."""

from __future__ import annotations

import ast
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


REPO = DOCS.parent
README = REPO / "README.md"
# A Markdown link or image: [text](target) / ![alt](target).
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def _pages() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


def _anchor(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation out, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def test_every_relative_link_in_readme_and_docs_resolves() -> None:
    broken = []
    for page in _pages():
        for target in LINK.findall(page.read_text(encoding="utf-8")):
            if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
                continue
            path, _, fragment = target.partition("#")
            resolved = (page.parent / path) if path else page
            if not resolved.exists():
                broken.append(f"{page.relative_to(REPO)}: {target}")
            elif fragment:
                headings = re.findall(r"^#+ (.+)$", resolved.read_text(encoding="utf-8"), re.M)
                if fragment not in {_anchor(h) for h in headings}:
                    broken.append(f"{page.relative_to(REPO)}: {target} (no such heading)")
    assert broken == []


def test_the_readme_fits_on_two_screens_and_links_every_docs_page() -> None:
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 150
    linked = {Path(target.partition("#")[0]).name for target in LINK.findall(text)}
    assert {page.name for page in DOCS.glob("*.md")} <= linked


def _settings_in_code() -> set[str]:
    """Every CALLBOARD_* name the code reads: settings fields and names written out."""
    names: set[str] = set()
    for folder in ("services", "shared", "devstack"):
        for path in (REPO / folder).rglob("*.py"):
            source = path.read_text(encoding="utf-8")
            names |= set(re.findall(r"CALLBOARD_[A-Z0-9_]*[A-Z0-9]", source))
            for node in ast.walk(ast.parse(source)):
                if isinstance(node, ast.ClassDef) and any(
                    ast.unparse(base).endswith("Settings") for base in node.bases
                ):
                    names |= {
                        "CALLBOARD_" + item.target.id.upper()
                        for item in node.body
                        if isinstance(item, ast.AnnAssign)
                        and isinstance(item.target, ast.Name)
                        and item.target.id != "model_config"
                        and not item.target.id.startswith("_")
                    }
    return names


def test_configuration_md_names_every_setting_of_the_code() -> None:
    names = _settings_in_code()
    # The settings every service reads, and one of the development commands.
    assert {"CALLBOARD_DATABASE_URL", "CALLBOARD_TEAM_TIMEZONES", "CALLBOARD_STATE_DIR"} <= names
    documented = set(
        re.findall(r"`(CALLBOARD_[A-Z0-9_]+)`", (DOCS / "configuration.md").read_text())
    )
    assert sorted(names - documented) == []
