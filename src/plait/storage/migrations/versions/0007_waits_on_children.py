"""A process row says whether its process waits for children; the runnable index holds that flag.

A daemon's claim asked, for every ``waiting`` process without a lease, whether it had a row in
``process_waits``: with 10,000 work chains parked on their children each claim read all 10,000 of
them to find the few whose children had ended.  ``processes.waits_on_children`` is true exactly
while the process has rows in ``process_waits`` (the backend writes both in one transaction), and
``ix_processes_runnable`` is ``(submitted, state, lease_expires, waits_on_children)``, so the claim
reads only the rows it may take.  This migration sets the flag of the processes that wait now.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "processes", sa.Column("waits_on_children", sa.Boolean(), nullable=False, server_default=sa.false())
    )
    op.execute(
        sa.text(
            "UPDATE processes SET waits_on_children = :yes WHERE EXISTS "
            "(SELECT 1 FROM process_waits WHERE process_waits.parent_id = processes.node_id)"
        ).bindparams(yes=True)
    )
    op.drop_index("ix_processes_runnable", table_name="processes")
    op.create_index(
        "ix_processes_runnable",
        "processes",
        ["submitted", "state", "lease_expires", "waits_on_children"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_processes_runnable", table_name="processes")
    op.create_index(
        "ix_processes_runnable", "processes", ["submitted", "state", "lease_expires"], unique=False
    )
    with op.batch_alter_table("processes") as batch:
        batch.drop_column("waits_on_children")
