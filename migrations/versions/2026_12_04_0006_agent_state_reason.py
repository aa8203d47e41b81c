"""agent state reason and the sale feed

Revision ID: 0006
Revises: 0004
Create Date: 2026-12-04 16:00:00

``agent_state_change.reason``: why an agent paused, as ``agent.state_changed`` says (optional,
at most 32 characters). ``sale_feed``: every sale once, when it is first counted, for the
live stream's ``sale`` events; it starts empty (sales counted before it existed are history,
not news).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("agent_state_change") as batch:
        batch.add_column(sa.Column("reason", sa.String(length=32), nullable=True))
    op.create_table(
        "sale_feed",
        sa.Column("seq", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("order_id", sa.String(length=128), nullable=False),
        sa.Column("agent_id", sa.String(length=64), nullable=False),
        sa.Column("team_id", sa.String(length=64), nullable=False),
        sa.Column("campaign_id", sa.String(length=64), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("counted_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_sale_feed")),
        sa.UniqueConstraint("order_id", name=op.f("uq_sale_feed_order_id")),
    )
    op.create_index(op.f("ix_sale_feed_counted_at"), "sale_feed", ["counted_at"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_sale_feed_counted_at"), table_name="sale_feed")
    op.drop_table("sale_feed")
    with op.batch_alter_table("agent_state_change") as batch:
        batch.drop_column("reason")
