"""Metered energy (service/meters.py): the sites' raw meter readings (kept for the retention,
`suanli serve --meter-retention-days`) and their hourly roll-ups (kept for good).

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # (site, at_us) is the key: a retried reading finds its stored twin, and the range scans of
    # one site's readings read the primary key's index
    op.create_table(
        "meter_readings",
        sa.Column("site", sa.String(128), primary_key=True),
        sa.Column("at_us", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("it_kw", sa.Float, nullable=False),
        sa.Column("facility_kw", sa.Float, nullable=False),
        sa.Column("renewable_kw", sa.Float, nullable=False),
        sa.Column("grid_kw", sa.Float, nullable=False),
        sa.Column("battery_soc_kwh", sa.Float, nullable=True),
    )
    # the retention sweep deletes by time across sites
    op.create_index("ix_meter_readings_at_us", "meter_readings", ["at_us"])
    op.create_table(
        "meter_hours",
        sa.Column("site", sa.String(128), primary_key=True),
        sa.Column("hour_s", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("it_kwh", sa.Float, nullable=False),
        sa.Column("facility_kwh", sa.Float, nullable=False),
        sa.Column("renewable_kwh", sa.Float, nullable=False),
        sa.Column("grid_kwh", sa.Float, nullable=False),
        sa.Column("export_kwh", sa.Float, nullable=False),
        sa.Column("carbon_kg", sa.Float, nullable=False),
        sa.Column("covered_s", sa.Float, nullable=False),
        sa.Column("readings", sa.Integer, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("meter_hours")
    op.drop_index("ix_meter_readings_at_us", "meter_readings")
    op.drop_table("meter_readings")
