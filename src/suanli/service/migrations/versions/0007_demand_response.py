"""Demand response against metered import (service/demand.py): the events table, and the
source of a grid cap (operator or a utility's signal, with its id and sender).

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # batch mode: SQLite cannot add a constraint to a table in place (it copies the table)
    with op.batch_alter_table("grid_caps") as b:
        b.add_column(sa.Column("source", sa.String(16), nullable=False, server_default="operator"))
        b.add_column(sa.Column("signal_id", sa.String(128), nullable=True))
        b.add_column(sa.Column("sender", sa.String(128), nullable=True))
        b.create_unique_constraint("uq_grid_caps_site_signal", ["site", "signal_id"])
    op.create_table(
        "demand_events",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("site", sa.String(128), nullable=False),
        sa.Column("cap_source", sa.String(16), nullable=False),
        sa.Column("cap_id", sa.Integer, nullable=True),
        sa.Column("max_grid_kw", sa.Float, nullable=False),
        sa.Column("start_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("detected_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("end_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("end_reason", sa.Text, nullable=False),
        sa.Column("peak_grid_kw", sa.Float, nullable=False),
        sa.Column("peak_over_kw", sa.Float, nullable=False),
        sa.Column("kwh_above", sa.Float, nullable=False),
        sa.Column("last_at_us", sa.BigInteger, nullable=False),
        sa.Column("last_grid_kw", sa.Float, nullable=False),
        sa.Column("stopped", sa.JSON, nullable=False),
        sa.Column("note", sa.Text, nullable=False),
    )
    op.create_index("ix_demand_events_site", "demand_events", ["site"])
    op.create_index("ix_demand_events_end_at", "demand_events", ["end_at"])


def downgrade() -> None:
    op.drop_index("ix_demand_events_end_at", "demand_events")
    op.drop_index("ix_demand_events_site", "demand_events")
    op.drop_table("demand_events")
    with op.batch_alter_table("grid_caps") as b:
        b.drop_constraint("uq_grid_caps_site_signal", type_="unique")
        b.drop_column("sender")
        b.drop_column("signal_id")
        b.drop_column("source")
