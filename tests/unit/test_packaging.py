"""What ships: the wheel and the image hold the services, never the development tooling.

``devstack/`` (local Kafka and PostgreSQL, the demo) lives in a checkout only; the
``callboard`` installed from a wheel answers its commands in one line instead.
"""

from __future__ import annotations

import fnmatch
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# What a build never reads, and what would be slow to copy.
NOT_SOURCE = shutil.ignore_patterns(
    ".git", ".venv", ".callboard", "build", "dist", "*.egg-info", "__pycache__", ".*_cache"
)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # A copy, so that the build's own build/ and egg-info never land in the checkout.
    source = tmp_path_factory.mktemp("source") / "callboard"
    shutil.copytree(ROOT, source, ignore=NOT_SOURCE)
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            *(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"),
            *("--no-index", "--quiet", "--wheel-dir", str(out), str(source)),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    [built] = out.glob("callboard-*.whl")
    return built


def test_wheel_holds_the_services_and_no_devstack(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    packages = {name.split("/")[0] for name in names if not name.startswith("callboard-")}
    assert packages == {"services", "shared", "migrations"}
    assert not [name for name in names if "devstack" in name]
    # What the services need at run time is there.
    assert "services/cli.py" in names
    assert "services/operator/keys.py" in names
    assert "services/operator/importer/cli.py" in names
    assert any(name.startswith("services/api/board/static/") for name in names)


def test_callboard_from_the_wheel_says_where_the_dev_commands_are(
    wheel: Path, tmp_path: Path
) -> None:
    installed = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(installed)
    # The wheel's packages ahead of the checkout's editable install; the dependencies from
    # this environment.
    env = {**os.environ, "PYTHONPATH": str(installed)}
    env.pop("CALLBOARD_STATE_DIR", None)
    for args, make in ((["up"], "up"), (["demo", "--seconds", "5"], "demo"), (["down"], "down")):
        done = subprocess.run(
            [sys.executable, "-m", "services.cli", *args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 1, done.stderr
        assert done.stdout == ""
        lines = done.stderr.splitlines()
        assert len(lines) == 1, done.stderr
        assert f"`callboard {args[0]}` is a development command" in lines[0]
        assert f"`make {make}`" in lines[0]
        assert "Traceback" not in done.stderr


def _dockerignored(name: str) -> bool:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    return any(fnmatch.fnmatch(name, pattern) for pattern in patterns)


def test_image_holds_no_devstack() -> None:
    sources: list[str] = []
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        words = line.split()
        if words and words[0].upper() in {"COPY", "ADD"}:
            sources += [word for word in words[1:-1] if not word.startswith("--")]
    assert "./services" in sources or "services" in sources
    for source in sources:
        top = Path(source).parts[0] if Path(source).parts else "."
        assert top != "devstack", source
        # A whole-context copy would bring devstack/ unless the build context leaves it out.
        if top == ".":
            assert _dockerignored("devstack"), source
    assert _dockerignored("devstack")


def test_callboard_from_a_checkout_finds_the_dev_commands_beside_services(tmp_path: Path) -> None:
    # Run from elsewhere, with nothing on the path but what the install maps: devstack/ is
    # found because it sits beside services/ in this checkout.
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    done = subprocess.run(
        [sys.executable, "-m", "services.cli", "up", "--help"],
        cwd=tmp_path,
        env={**env, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "--kafka-port" in done.stdout and "--state-dir" in done.stdout
    assert "development command" not in done.stdout + done.stderr
