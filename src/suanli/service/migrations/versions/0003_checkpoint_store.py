"""The checkpoint store, retries and demand response: the site where the stored checkpoint of a
job was made, the checkpoint moves priced but not yet on the usage ledger (added to the next
metered run's transfer cost), the number of the job's runs that failed so far, and the grid
caps the operator announced.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("jobs", sa.Column("checkpoint_site", sa.String(128), nullable=True))
    op.add_column("jobs", sa.Column("move_cny", sa.Float, nullable=False, server_default="0"))
    op.add_column("jobs", sa.Column("attempts", sa.Integer, nullable=False, server_default="0"))
    op.create_table(
        "grid_caps",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("site", sa.String(128), nullable=False),
        sa.Column("start_h", sa.Float, nullable=False),
        sa.Column("end_h", sa.Float, nullable=False),
        sa.Column("max_grid_kw", sa.Float, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_grid_caps_site", "grid_caps", ["site"])


def downgrade() -> None:
    op.drop_table("grid_caps")
    with op.batch_alter_table("jobs") as b:
        b.drop_column("attempts")
        b.drop_column("move_cny")
        b.drop_column("checkpoint_site")
