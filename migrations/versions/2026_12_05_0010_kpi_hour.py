"""counters per local hour

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05 07:30:00

``kpi_hour``: the minute counters summed per local hour and scope, so that ranges which are
not whole days (rolling windows, today by hour) read whole hours and only their edges from
``kpi_minute``. Filled from the minute rows already stored, so an upgraded deployment
answers from it straight away.
"""

import logging
import time
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

log = logging.getLogger("alembic.runtime.migration")

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The counters of kpi_minute at this revision.
COUNTERS = (
    "dials",
    "inbound_calls",
    "connects",
    "inbound_connects",
    "contacts",
    "effective_calls",
    "talk_seconds",
    "effective_talk_seconds",
    "wrap_seconds",
    "quotes",
    "sales",
    "revenue",
    "margin",
    "collections",
    "new_customer_sales",
    "existing_customer_sales",
    "csat_responses",
    "csat_sum",
    "drops",
    "abandoned",
    "machine_answers",
    "dnc_marks",
    "callbacks_scheduled",
    "not_interested",
)
KEY = ("hour", "agent_id", "team_id", "campaign_id")


def upgrade() -> None:
    table = op.create_table(
        "kpi_hour",
        sa.Column("hour", sa.DateTime(timezone=True), nullable=False),
        sa.Column("agent_id", sa.String(length=64), nullable=False),
        sa.Column("team_id", sa.String(length=64), nullable=False),
        sa.Column("campaign_id", sa.String(length=64), nullable=False),
        *(sa.Column(name, sa.BigInteger(), nullable=False) for name in COUNTERS),
        sa.PrimaryKeyConstraint(*KEY, name=op.f("pk_kpi_hour")),
    )
    minute = sa.table("kpi_minute", *(sa.column(name) for name in (*KEY, *COUNTERS)))
    started = time.monotonic()
    summed = sa.select(
        *(minute.c[name] for name in KEY), *(sa.func.sum(minute.c[name]) for name in COUNTERS)
    ).group_by(*(minute.c[name] for name in KEY))
    op.execute(table.insert().from_select([*KEY, *COUNTERS], summed))
    log.info("kpi_hour filled from kpi_minute in %.1f s", time.monotonic() - started)


def downgrade() -> None:
    op.drop_table("kpi_hour")
