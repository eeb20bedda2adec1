"""Job output: where each run's output lies on its site, and the tail the agent uploaded
(`GET /v1/jobs/{id}/logs`, `suanli logs`).

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "run_outputs",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("job_id", sa.Integer, sa.ForeignKey("jobs.id"), nullable=False),
        sa.Column("fence", sa.Integer, nullable=False),
        sa.Column("site", sa.String(128), nullable=False),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("size_bytes", sa.BigInteger, nullable=False),
        sa.Column("tail", sa.LargeBinary, nullable=False),
        sa.Column("uploaded_at", sa.DateTime(timezone=True), nullable=True),
        sa.UniqueConstraint("job_id", "fence", name="uq_run_outputs_job_fence"),
    )
    op.create_index("ix_run_outputs_job_id", "run_outputs", ["job_id"])


def downgrade() -> None:
    op.drop_table("run_outputs")
