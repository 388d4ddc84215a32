"""Alembic environment: runs on the connection that `flowopt.store.migrate` passes in."""
from alembic import context

from flowopt.store.schema import Base

context.configure(connection=context.config.attributes["connection"],
                  target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
