"""counters of the disposition flags

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04 16:00:00

Six counters per minute and per day, from each call's facts and the flags of its latest
disposition code: ``drops``, ``abandoned``, ``machine_answers``, ``dnc_marks``,
``callbacks_scheduled``, ``not_interested``. They start at 0 on rows already stored, and the
flags also refine ``connects`` and ``contacts`` (machine and drop codes); ``callboard
rebuild`` recomputes every table from the events topic under the new definitions.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COUNTERS = (
    "drops",
    "abandoned",
    "machine_answers",
    "dnc_marks",
    "callbacks_scheduled",
    "not_interested",
)
TABLES = ("kpi_minute", "kpi_day")


def upgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            for name in COUNTERS:
                batch_op.add_column(
                    sa.Column(name, sa.BigInteger(), nullable=False, server_default=sa.text("0"))
                )


def downgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            for name in reversed(COUNTERS):
                batch_op.drop_column(name)
