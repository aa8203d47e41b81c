"""distinct lead counts per local hour

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06 20:00:00

``lead_count_hour`` (see ``shared.leadcounts``): per scope kind and local hour, how many
leads have each fact in it, so that reads by hour (today by hour) sum it instead of
counting the facts. Filled from the lead facts already stored, so an upgraded deployment
answers from it straight away.
"""

import logging
import time
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from shared.leadcounts import HOUR_KEY_COLUMNS, LEAD_FACTS, hour_contributions
from shared.models import lead_fact

log = logging.getLogger("alembic.runtime.migration")

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    table = op.create_table(
        "lead_count_hour",
        sa.Column("kind", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("hour", sa.DateTime(timezone=True), nullable=False),
        sa.Column("agent_id", sa.String(length=64), nullable=False),
        sa.Column("team_id", sa.String(length=64), nullable=False),
        sa.Column("campaign_id", sa.String(length=64), nullable=False),
        *(sa.Column(name, sa.Integer(), nullable=False) for name in LEAD_FACTS),
        sa.PrimaryKeyConstraint(*HOUR_KEY_COLUMNS, name=op.f("pk_lead_count_hour")),
    )
    started = time.monotonic()
    filled = hour_contributions(lead_fact)
    op.execute(table.insert().from_select([*HOUR_KEY_COLUMNS, *LEAD_FACTS], filled))
    log.info("lead_count_hour filled from the lead facts in %.1f s", time.monotonic() - started)


def downgrade() -> None:
    op.drop_table("lead_count_hour")
