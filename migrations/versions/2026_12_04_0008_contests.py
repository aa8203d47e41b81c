"""contests

Revision ID: 0008
Revises: 0006
Create Date: 2026-12-04 18:00:00

``contest``: a contest's rules (name, KPI, scope and teams, ``[starts_at, ends_at)``, minimum
volume, order, prize). Its standings are read from the KPI tables, never stored.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "contest",
        sa.Column("contest_id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("kpi", sa.String(length=64), nullable=False),
        sa.Column("scope", sa.String(length=8), nullable=False),
        sa.Column("team_ids", sa.Text(), nullable=False),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ends_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("min_volume", sa.Integer(), nullable=False),
        sa.Column("ascending", sa.Boolean(), nullable=False),
        sa.Column("prize", sa.String(length=500), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=128), nullable=False),
        sa.PrimaryKeyConstraint("contest_id", name=op.f("pk_contest")),
    )
    op.create_index(op.f("ix_contest_ends_at"), "contest", ["ends_at"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_contest_ends_at"), table_name="contest")
    op.drop_table("contest")
