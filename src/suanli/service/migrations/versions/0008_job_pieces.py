"""Suspend-resume plans in the live controller (controller.py, "Suspend and resume"): the later
pieces of the plan a job's placement or run is the first piece of.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as b:
        b.add_column(sa.Column("pieces", sa.JSON, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as b:
        b.drop_column("pieces")
