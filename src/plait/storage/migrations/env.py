"""Alembic environment: runs on the connection plait hands over (online mode only)."""

from __future__ import annotations

from alembic import context

from plait.storage.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - plait always passes a connection
    raise RuntimeError("plait migrations run through plait.storage.migrations.upgrade(connection)")

context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
