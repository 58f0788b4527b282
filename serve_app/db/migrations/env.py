"""Alembic's environment: always run by `engine.migrate` with a connection of ours."""

from alembic import context

from serve_app.db.schema import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata,
                  render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    context.run_migrations()
