"""Calculation job stage on processes (to cap queued jobs per computer); index nodes by computer.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("processes") as batch:
        batch.add_column(sa.Column("job_stage", sa.String(length=16), nullable=True))
        batch.create_index(batch.f("ix_processes_job_stage"), ["job_stage"], unique=False)
    op.create_index(op.f("ix_nodes_computer_id"), "nodes", ["computer_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_nodes_computer_id"), table_name="nodes")
    with op.batch_alter_table("processes") as batch:
        batch.drop_index(batch.f("ix_processes_job_stage"))
        batch.drop_column("job_stage")
