"""The first tables: meta, tenants, tokens, jobs, transitions, site agents, usage.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table("meta", sa.Column("key", sa.String(64), primary_key=True),
                    sa.Column("value", sa.Text, nullable=False))
    op.create_table(
        "tenants",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(128), nullable=False, unique=True),
        sa.Column("quota", sa.JSON, nullable=False),
        sa.Column("budget_cny", sa.Float, nullable=True),
        sa.Column("created_at", TZ, nullable=False),
    )
    op.create_table(
        "tokens",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("tenant_id", sa.Integer, sa.ForeignKey("tenants.id"), nullable=True),
        sa.Column("site", sa.String(128), nullable=True),
        sa.Column("created_at", TZ, nullable=False),
    )
    op.create_table(
        "jobs",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("tenant_id", sa.Integer, sa.ForeignKey("tenants.id"), nullable=False),
        sa.Column("name", sa.String(256), nullable=False),
        sa.Column("command", sa.Text, nullable=False),
        sa.Column("spec", sa.JSON, nullable=False),
        sa.Column("gpus", sa.Integer, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("submit_h", sa.Float, nullable=False),
        sa.Column("remaining_work", sa.Float, nullable=False),
        sa.Column("hosted", sa.JSON, nullable=False),
        sa.Column("site", sa.String(128), nullable=True),
        sa.Column("gpu_type", sa.String(64), nullable=True),
        sa.Column("start_h", sa.Float, nullable=True),
        sa.Column("end_h", sa.Float, nullable=True),
        sa.Column("fence", sa.Integer, nullable=False),
        sa.Column("explanation", sa.JSON, nullable=True),
        sa.Column("idempotency_key", sa.String(256), nullable=True),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
        sa.UniqueConstraint("tenant_id", "idempotency_key", name="uq_jobs_tenant_idempotency"),
    )
    op.create_index("ix_jobs_tenant_id", "jobs", ["tenant_id"])
    op.create_index("ix_jobs_state", "jobs", ["state"])
    op.create_index("ix_jobs_site", "jobs", ["site"])
    op.create_table(
        "transitions",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("job_id", sa.Integer, sa.ForeignKey("jobs.id"), nullable=False),
        sa.Column("from_state", sa.String(16), nullable=True),
        sa.Column("to_state", sa.String(16), nullable=False),
        sa.Column("at", TZ, nullable=False),
        sa.Column("at_h", sa.Float, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
    )
    op.create_index("ix_transitions_job_id", "transitions", ["job_id"])
    op.create_table(
        "site_agents",
        sa.Column("site", sa.String(128), primary_key=True),
        sa.Column("registered_at", TZ, nullable=False),
        sa.Column("last_seen_at", TZ, nullable=False),
        sa.Column("info", sa.JSON, nullable=False),
    )
    op.create_table(
        "usage",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("job_id", sa.Integer, sa.ForeignKey("jobs.id"), nullable=False),
        sa.Column("tenant_id", sa.Integer, sa.ForeignKey("tenants.id"), nullable=False),
        sa.Column("fence", sa.Integer, nullable=False),
        sa.Column("site", sa.String(128), nullable=False),
        sa.Column("gpu_type", sa.String(64), nullable=False),
        sa.Column("gpus", sa.Integer, nullable=False),
        sa.Column("start_h", sa.Float, nullable=False),
        sa.Column("end_h", sa.Float, nullable=False),
        sa.Column("month", sa.String(7), nullable=False),
        sa.Column("gpu_seconds", sa.Float, nullable=False),
        sa.Column("energy_kwh", sa.Float, nullable=False),
        sa.Column("grid_kwh", sa.Float, nullable=False),
        sa.Column("renewable_kwh", sa.Float, nullable=False),
        sa.Column("carbon_kg", sa.Float, nullable=False),
        sa.Column("gpu_cny", sa.Float, nullable=False),
        sa.Column("energy_cny", sa.Float, nullable=False),
        sa.Column("transfer_cny", sa.Float, nullable=False),
        sa.Column("total_cny", sa.Float, nullable=False),
        sa.Column("recorded_at", TZ, nullable=False),
        sa.UniqueConstraint("job_id", "fence", name="uq_usage_job_fence"),
    )
    op.create_index("ix_usage_job_id", "usage", ["job_id"])
    op.create_index("ix_usage_tenant_id", "usage", ["tenant_id"])
    op.create_index("ix_usage_month", "usage", ["month"])


def downgrade() -> None:
    for t in ("usage", "site_agents", "transitions", "jobs", "tokens", "tenants", "meta"):
        op.drop_table(t)
