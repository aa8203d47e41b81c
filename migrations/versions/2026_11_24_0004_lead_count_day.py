"""distinct lead counts as daily sums

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24 06:00:00

``lead_count_day`` (see ``shared.leadcounts``) is filled from the lead facts already stored,
so a deployment that upgrades answers month and week ranges from it straight away.
"""

import logging
import time
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from shared.leadcounts import KEY_COLUMNS, MARK_COLUMNS, contributions
from shared.models import lead_fact

log = logging.getLogger("alembic.runtime.migration")

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    table = op.create_table(
        "lead_count_day",
        sa.Column("kind", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("agent_id", sa.String(length=64), nullable=False),
        sa.Column("team_id", sa.String(length=64), nullable=False),
        sa.Column("campaign_id", sa.String(length=64), nullable=False),
        sa.Column("week", sa.Date(), nullable=False),
        sa.Column("month", sa.Date(), nullable=False),
        *(sa.Column(name, sa.Integer(), nullable=False) for name in MARK_COLUMNS),
        sa.PrimaryKeyConstraint(
            "kind", "day", "agent_id", "team_id", "campaign_id", name=op.f("pk_lead_count_day")
        ),
    )
    with op.batch_alter_table("lead_fact", schema=None) as batch_op:
        batch_op.create_index("ix_lead_fact_lead_id", ["lead_id", "fact", "day"], unique=False)
    connection = op.get_bind()
    facts = connection.execute(sa.select(sa.func.count()).select_from(lead_fact)).scalar_one()
    log.info("filling lead_count_day from %s lead facts (about 30 s per million)", f"{facts:,}")
    started = time.monotonic()
    filled = contributions(lead_fact)
    op.execute(table.insert().from_select([*KEY_COLUMNS, *MARK_COLUMNS], filled))
    log.info("lead_count_day filled in %.1f s", time.monotonic() - started)


def downgrade() -> None:
    with op.batch_alter_table("lead_fact", schema=None) as batch_op:
        batch_op.drop_index("ix_lead_fact_lead_id")
    op.drop_table("lead_count_day")
