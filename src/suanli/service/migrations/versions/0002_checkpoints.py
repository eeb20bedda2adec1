"""Checkpoints and failover: a job's last checkpoint (controller hour and bytes, as its agent
reported the files in SUANLI_CHECKPOINT_DIR) and the site an outage cut it from.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("jobs", sa.Column("checkpoint_h", sa.Float, nullable=True))
    op.add_column("jobs", sa.Column("checkpoint_bytes", sa.BigInteger, nullable=True))
    op.add_column("jobs", sa.Column("preempted_from", sa.String(128), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as b:
        b.drop_column("preempted_from")
        b.drop_column("checkpoint_bytes")
        b.drop_column("checkpoint_h")
