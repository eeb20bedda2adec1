"""Alembic environment: the service runs migrations itself (`suanli.service.db.migrate`), with
the connection passed in `config.attributes["connection"]`."""

from alembic import context

from suanli.service.models import Base

target_metadata = Base.metadata
connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=target_metadata,
                  render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    context.run_migrations()
