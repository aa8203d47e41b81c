"""latest-fact sums for the rolling windows' distinct leads

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07 06:30:00

``lead_last_minute`` and ``lead_last_hour`` (see ``shared.leadcounts``): per scope kind and
minute (local hour), how many leads have their latest fact of each kind there, over the last
``LAST_HORIZON``. Filled from the lead facts already stored, so an upgraded deployment
answers its rolling windows from them straight away.
"""

import logging
import time
from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from shared.leadcounts import (
    LAST_HORIZON,
    LAST_HOUR_KEY_COLUMNS,
    LAST_MINUTE_KEY_COLUMNS,
    LEAD_FACTS,
    last_contributions,
)
from shared.models import lead_fact

log = logging.getLogger("alembic.runtime.migration")

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    horizon = datetime.now(UTC) - LAST_HORIZON
    started = time.monotonic()
    for name, keys in (
        ("lead_last_minute", LAST_MINUTE_KEY_COLUMNS),
        ("lead_last_hour", LAST_HOUR_KEY_COLUMNS),
    ):
        table = op.create_table(
            name,
            sa.Column("kind", sa.Integer(), autoincrement=False, nullable=False),
            sa.Column(keys[1], sa.DateTime(timezone=True), nullable=False),
            sa.Column("agent_id", sa.String(length=64), nullable=False),
            sa.Column("team_id", sa.String(length=64), nullable=False),
            sa.Column("campaign_id", sa.String(length=64), nullable=False),
            *(sa.Column(fact, sa.Integer(), nullable=False) for fact in LEAD_FACTS),
            sa.PrimaryKeyConstraint(*keys, name=op.f(f"pk_{name}")),
        )
        filled = last_contributions(lead_fact, horizon, keys[1])
        op.execute(table.insert().from_select([*keys, *LEAD_FACTS], filled))
    log.info("lead_last_* filled from the lead facts in %.1f s", time.monotonic() - started)


def downgrade() -> None:
    op.drop_table("lead_last_hour")
    op.drop_table("lead_last_minute")
