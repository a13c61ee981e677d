"""An index of ``attributes.value`` (the value of every Int, Float, Str and Bool node).

A filter such as ``attributes.value > 9000`` read every node of the type before; with the
index the database starts from the matching values.  The index is partial (nodes without a
``value`` key, processes among them, are not in it) and its expression is the one the query
builder writes: ``json_extract(attributes, '$."value"')`` on SQLite, ``(attributes -> 'value')``
on PostgreSQL (see ``plait.storage.schema.AttributeValue``).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def _expression() -> str:
    if op.get_bind().dialect.name == "sqlite":
        return "json_extract(attributes, '$.\"value\"')"
    return "(attributes -> 'value')"


def upgrade() -> None:
    value = _expression()
    op.execute(f"CREATE INDEX ix_nodes_attributes_value ON nodes ({value}) WHERE {value} IS NOT NULL")


def downgrade() -> None:
    op.drop_index("ix_nodes_attributes_value", table_name="nodes")
