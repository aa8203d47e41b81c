"""contest announcements on the channels

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04 18:10:00

``channel_delivery.subject``: what a delivery announces besides the channel's digest (empty
for a digest; ``contest:<id>:start``, ``contest:<id>:lead:<leaders>``, ``contest:<id>:result``
for a contest's). A delivery is unique per channel, slot and subject.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "channel_delivery",
        sa.Column("subject", sa.Text(), nullable=False, server_default=""),
    )
    op.drop_constraint("uq_channel_delivery_channel_slot", "channel_delivery", type_="unique")
    op.create_unique_constraint(
        "uq_channel_delivery_channel_slot_subject",
        "channel_delivery",
        ["channel", "slot", "subject"],
    )


def downgrade() -> None:
    op.execute("DELETE FROM channel_delivery WHERE subject <> ''")
    op.drop_constraint(
        "uq_channel_delivery_channel_slot_subject", "channel_delivery", type_="unique"
    )
    op.create_unique_constraint(
        "uq_channel_delivery_channel_slot", "channel_delivery", ["channel", "slot"]
    )
    op.drop_column("channel_delivery", "subject")
