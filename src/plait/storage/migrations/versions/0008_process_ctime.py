"""Each process row carries its node's creation time, indexed: a list of recent processes reads it alone.

``QueryBuilder().append(ProcessNode, filters={"ctime": {">": since}}, project=["id", "ctime",
"attributes.process_label", "attributes.process_state", "attributes.exit_status"])`` read every
node created since then (inputs and outputs too) from ``ix_nodes_ctime`` and probed ``processes``
for each.  With ``processes.ctime`` and ``ix_processes_ctime`` such a query reads the process rows
of that time alone.  A node's creation time never changes, so the copy made when the row is
inserted stays true; this migration fills it for the rows there already.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""

from __future__ import annotations

import warnings

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("processes", sa.Column("ctime", sa.DateTime(timezone=True), nullable=True))
    op.execute("UPDATE processes SET ctime = (SELECT ctime FROM nodes WHERE nodes.id = processes.node_id)")
    with warnings.catch_warnings():
        # as in 0006: SQLite's batch copy reflects ``nodes`` and its expression index of 0005
        warnings.filterwarnings("ignore", "Skipped unsupported reflection", sa.exc.SAWarning)
        with op.batch_alter_table("processes") as batch:
            batch.alter_column("ctime", existing_type=sa.DateTime(timezone=True), nullable=False)
            batch.create_index("ix_processes_ctime", ["ctime"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("processes") as batch:
        batch.drop_index("ix_processes_ctime")
        batch.drop_column("ctime")
