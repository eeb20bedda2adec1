"""Planned stops in the live controller (controller.py, "Planned stops"): whether a job's run ends
in a planned stop, and the work its earlier runs kept (what its rest is predicted from).

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as b:
        b.add_column(sa.Column("stops", sa.Boolean, nullable=False, server_default=sa.false()))
        b.add_column(sa.Column("done_work", sa.Float, nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as b:
        b.drop_column("done_work")
        b.drop_column("stops")
