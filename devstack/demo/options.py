"""What ``callboard demo`` is asked for, and where it keeps its state."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

DEFAULT_DEMO_DIR = Path(".callboard") / "demo"


@dataclass(frozen=True)
class DemoOptions:
    """What ``callboard demo`` was asked for."""

    # Seconds of live numbers before stopping (startup not counted); 0 = until interrupted.
    seconds: float = 0.0
    teams: int = 3
    agents_per_team: int = 6
    seed: int | None = None
    state_dir: Path = DEFAULT_DEMO_DIR
