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


# In batch mode, so that SQLite (the demo's database) takes the constraint change too: it
# cannot alter a constraint in place, and batch mode copies the table there.
def upgrade() -> None:
    with op.batch_alter_table("channel_delivery") as batch:
        batch.add_column(sa.Column("subject", sa.Text(), nullable=False, server_default=""))
        batch.drop_constraint("uq_channel_delivery_channel_slot", type_="unique")
        batch.create_unique_constraint(
            "uq_channel_delivery_channel_slot_subject", ["channel", "slot", "subject"]
        )


def downgrade() -> None:
    op.execute("DELETE FROM channel_delivery WHERE subject <> ''")
    with op.batch_alter_table("channel_delivery") as batch:
        batch.drop_constraint("uq_channel_delivery_channel_slot_subject", type_="unique")
        batch.create_unique_constraint("uq_channel_delivery_channel_slot", ["channel", "slot"])
        batch.drop_column("subject")
