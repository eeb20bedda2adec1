"""The control plane: REST API, tenants and tokens, persistence, the live controller, metering.

The controller drives the same policies as the simulator (`suanli.scheduling.policies`) on a
wall clock; the database (SQLAlchemy 2, Alembic migrations) holds every job, its lifecycle and
the usage ledger; invoices are priced by `suanli.accounting`.
"""
