"""``/board``: the wallboard's page, its assets and its settings.

The page holds no data: it reads the API with the key from its URL fragment, like any
other dashboard, so these routes need no key. Assets are the files of ``static/`` as they
are in the package (no build step, nothing fetched at run time).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, RedirectResponse
from pydantic import BaseModel, Field
from starlette.staticfiles import StaticFiles

from services.api.deps import Settings
from services.api.settings import BoardState
from shared.errors import ERROR_RESPONSES

STATIC = Path(__file__).resolve().parent / "static"
# The page changes with each release; browsers ask again rather than show an old one.
NO_CACHE = {"Cache-Control": "no-cache"}

router = APIRouter(responses=ERROR_RESPONSES, tags=["board"])


class BoardConfig(BaseModel):
    """What the page needs to know about the deployment."""

    drop_rate_max: str = Field(description="CALLBOARD_DROP_RATE_MAX: drop rate shown red above")
    state_seconds: dict[BoardState, list[int]] = Field(
        description="Per agent state, the seconds in state at which the tile's colour steps up"
    )
    currency: str
    timezone: str


@router.get("/board", include_in_schema=False)
def board_page() -> FileResponse:
    return FileResponse(STATIC / "index.html", headers=NO_CACHE)


@router.get("/board/", include_in_schema=False)
def board_slash() -> RedirectResponse:
    return RedirectResponse("/board", status_code=308)


@router.get("/board/config.json", response_model=BoardConfig)
def board_config(settings: Settings) -> BoardConfig:
    """The wallboard's settings: the drop-rate maximum and the time-in-state colour steps."""
    return BoardConfig(
        drop_rate_max=str(settings.drop_rate_max),
        state_seconds=settings.board_state_seconds,
        currency=settings.currency,
        timezone=settings.timezone,
    )


def board_assets() -> StaticFiles:
    """The page's scripts and styles (with ETag and Last-Modified, so browsers revalidate)."""
    return StaticFiles(directory=STATIC)
