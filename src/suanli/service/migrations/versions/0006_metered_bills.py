"""Bills from meters (service/bills.py): each ledger row says whether its energy is metered or
modelled, a true-up of a closed month is a row of its own (`kind`, `adjusts`), the run's GPU
energy as the agent measured it (`gpu_kwh`), and what each row took from each metered hour
(`usage_hours`: the site's idle share is the meter less their sum).

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # rows already on the ledger were priced from the network file's models
    with op.batch_alter_table("usage") as b:
        b.add_column(sa.Column("kind", sa.String(8), nullable=False, server_default="run"))
        b.add_column(sa.Column("energy_basis", sa.String(8), nullable=False, server_default="modelled"))
        b.add_column(sa.Column("adjusts", sa.Integer, sa.ForeignKey("usage.id", name="fk_usage_adjusts"),
                               nullable=True))
        b.add_column(sa.Column("gpu_kwh", sa.Float, nullable=True))
        # a run's row and its true-up share (job, fence); each run is trued up at most once
        b.drop_constraint("uq_usage_job_fence", type_="unique")
        b.create_unique_constraint("uq_usage_job_fence_kind", ["job_id", "fence", "kind"])
        b.create_unique_constraint("uq_usage_adjusts", ["adjusts"])
    op.create_table(
        "usage_hours",
        sa.Column("usage_id", sa.Integer, sa.ForeignKey("usage.id"), primary_key=True),
        sa.Column("hour_s", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("site", sa.String(128), nullable=False),
        sa.Column("facility_kwh", sa.Float, nullable=False),
        sa.Column("grid_kwh", sa.Float, nullable=False),
        sa.Column("carbon_kg", sa.Float, nullable=False),
        sa.Column("energy_cny", sa.Float, nullable=False),
    )
    # the idle share of a site's hours: the allocations summed by (site, hour)
    op.create_index("ix_usage_hours_site_hour", "usage_hours", ["site", "hour_s"])


def downgrade() -> None:
    op.drop_index("ix_usage_hours_site_hour", "usage_hours")
    op.drop_table("usage_hours")
    op.execute("DELETE FROM usage WHERE kind <> 'run'")
    with op.batch_alter_table("usage") as b:
        b.drop_constraint("uq_usage_adjusts", type_="unique")
        b.drop_constraint("uq_usage_job_fence_kind", type_="unique")
        b.create_unique_constraint("uq_usage_job_fence", ["job_id", "fence"])
        b.drop_column("gpu_kwh")
        b.drop_column("adjusts")
        b.drop_column("energy_basis")
        b.drop_column("kind")
