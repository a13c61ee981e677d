"""Each process row carries its node's type; one index serves queries by label, state and exit status.

``QueryBuilder().append(CalcFunctionNode, filters={"attributes.process_state": "finished",
"attributes.exit_status": 0, "attributes.process_label": "add"}).count()`` joined every matching
process row to its node only to read ``node_type``: at 1,000,000 calculations that join was most
of the query.  With the type in ``processes`` and the index ``(process_label, state, exit_status,
node_type)``, such a count reads the index alone.  A node's type never changes, so the copy made
when the row is inserted stays true; this migration fills it for the rows there already.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

from __future__ import annotations

import warnings

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("processes", sa.Column("node_type", sa.String(length=255), nullable=True))
    op.execute(
        "UPDATE processes SET node_type = (SELECT node_type FROM nodes WHERE nodes.id = processes.node_id)"
    )
    with warnings.catch_warnings():
        # SQLite's batch copy of the table reflects ``nodes`` too, whose expression index of
        # migration 0005 SQLAlchemy cannot reflect; that index is not touched here
        warnings.filterwarnings("ignore", "Skipped unsupported reflection", sa.exc.SAWarning)
        _not_null_and_index()


def _not_null_and_index() -> None:
    with op.batch_alter_table("processes") as batch:
        batch.alter_column("node_type", existing_type=sa.String(length=255), nullable=False)
        batch.create_index(
            "ix_processes_label_state", ["process_label", "state", "exit_status", "node_type"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("processes") as batch:
        batch.drop_index("ix_processes_label_state")
        batch.drop_column("node_type")
