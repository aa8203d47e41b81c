"""targets and funnel

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24 03:00:00

The funnel tables are filled from the stage changes already merged (``entity_state`` rows
``stage:<event_id>``), so a deployment that upgrades keeps its funnel history.
"""

import json
from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TZ = sa.DateTime(timezone=True)


def _lead_columns() -> list[sa.Column]:  # type: ignore[type-arg]
    return [
        sa.Column("lead_id", sa.String(length=128), nullable=False),
        sa.Column("stage", sa.String(length=16), nullable=False),
        sa.Column("occurred_at", TZ, nullable=False),
    ]


def _scope_columns() -> list[sa.Column]:  # type: ignore[type-arg]
    return [
        sa.Column("agent_id", sa.String(length=64), nullable=False),
        sa.Column("team_id", sa.String(length=64), nullable=False),
        sa.Column("campaign_id", sa.String(length=64), nullable=False),
    ]


def upgrade() -> None:
    lead_stage = op.create_table(
        "lead_stage",
        *_lead_columns(),
        sa.Column("event_id", sa.String(length=128), nullable=False),
        *_scope_columns(),
        sa.PrimaryKeyConstraint("lead_id", name=op.f("pk_lead_stage")),
    )
    stage_change = op.create_table(
        "stage_change",
        sa.Column("event_id", sa.String(length=128), nullable=False),
        *_lead_columns(),
        *_scope_columns(),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_stage_change")),
    )
    with op.batch_alter_table("stage_change", schema=None) as batch_op:
        batch_op.create_index("ix_stage_change_occurred_at", ["occurred_at"], unique=False)

    op.create_table(
        "target",
        sa.Column("target_id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("scope", sa.String(length=16), nullable=False),
        sa.Column("scope_id", sa.String(length=64), nullable=False),
        sa.Column("kpi", sa.String(length=64), nullable=False),
        sa.Column("period", sa.String(length=8), nullable=False),
        sa.Column("period_start", sa.Date(), nullable=False),
        sa.Column("value", sa.String(length=40), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
        sa.Column("deleted_at", TZ, nullable=True),
        sa.PrimaryKeyConstraint("target_id", name=op.f("pk_target")),
    )
    with op.batch_alter_table("target", schema=None) as batch_op:
        batch_op.create_index(
            "ix_target_scope_kpi_period",
            ["scope", "scope_id", "kpi", "period_start"],
            unique=False,
        )

    op.create_table(
        "target_change",
        sa.Column("change_id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("target_id", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("value", sa.String(length=40), nullable=True),
        sa.Column("previous_value", sa.String(length=40), nullable=True),
        sa.Column("effective_from", TZ, nullable=False),
        sa.Column("changed_at", TZ, nullable=False),
        sa.Column("changed_by", sa.String(length=128), nullable=False),
        sa.Column("key_id", sa.String(length=32), nullable=True),
        sa.PrimaryKeyConstraint("change_id", name=op.f("pk_target_change")),
    )
    with op.batch_alter_table("target_change", schema=None) as batch_op:
        batch_op.create_index("ix_target_change_target_id", ["target_id"], unique=False)

    op.create_table(
        "working_calendar",
        sa.Column("team_id", sa.String(length=64), nullable=False),
        sa.Column("calendar", sa.Text(), nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
        sa.Column("updated_by", sa.String(length=128), nullable=False),
        sa.PrimaryKeyConstraint("team_id", name=op.f("pk_working_calendar")),
    )
    _backfill(lead_stage, stage_change)


def _backfill(lead_stage: sa.Table, stage_change: sa.Table) -> None:
    connection = op.get_bind()
    rows = connection.execute(
        sa.text("SELECT state FROM entity_state WHERE key LIKE 'stage:%'")
    ).scalars()
    changes: list[dict[str, object]] = []
    latest: dict[str, dict[str, object]] = {}
    for state in rows:
        event = json.loads(state).get("event") or {}
        if event.get("type") != "lead.stage_changed":
            continue
        row = {
            "event_id": event["event_id"],
            "lead_id": event["lead_id"],
            "stage": event["stage"],
            "occurred_at": datetime.fromisoformat(event["ts"]),
            "agent_id": event.get("agent_id") or "",
            "team_id": event.get("team_id") or "",
            "campaign_id": event.get("campaign_id") or "",
        }
        changes.append(row)
        known = latest.get(row["lead_id"])  # type: ignore[arg-type]
        if known is None or (row["occurred_at"], row["event_id"]) > (
            known["occurred_at"],
            known["event_id"],
        ):
            latest[row["lead_id"]] = row  # type: ignore[index]
    for start in range(0, len(changes), 1000):
        op.bulk_insert(stage_change, changes[start : start + 1000])
    current = list(latest.values())
    for start in range(0, len(current), 1000):
        op.bulk_insert(lead_stage, current[start : start + 1000])


def downgrade() -> None:
    op.drop_table("working_calendar")
    with op.batch_alter_table("target_change", schema=None) as batch_op:
        batch_op.drop_index("ix_target_change_target_id")
    op.drop_table("target_change")
    with op.batch_alter_table("target", schema=None) as batch_op:
        batch_op.drop_index("ix_target_scope_kpi_period")
    op.drop_table("target")
    with op.batch_alter_table("stage_change", schema=None) as batch_op:
        batch_op.drop_index("ix_stage_change_occurred_at")
    op.drop_table("stage_change")
    op.drop_table("lead_stage")
