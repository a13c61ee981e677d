"""The first schema of plait: nodes, processes, checkpoints, links, logs, computers, broker, workers.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# Frozen copies of the column types as they were in this revision.
PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "broker_messages",
        sa.Column("id", PK, autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("process_id", PK, nullable=True),
        sa.Column("body", JSON, nullable=False),
        sa.Column("created", sa.Float(), nullable=False),
        sa.Column("handled", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_broker_messages")),
    )
    op.create_index(op.f("ix_broker_messages_created"), "broker_messages", ["created"], unique=False)
    op.create_index(op.f("ix_broker_messages_process_id"), "broker_messages", ["process_id"], unique=False)
    op.create_table(
        "computers",
        sa.Column("id", PK, autoincrement=True, nullable=False),
        sa.Column("uuid", sa.String(length=36), nullable=False),
        sa.Column("label", sa.String(length=255), nullable=False),
        sa.Column("hostname", sa.String(length=255), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("transport_type", sa.String(length=255), nullable=False),
        sa.Column("scheduler_type", sa.String(length=255), nullable=False),
        sa.Column("work_dir", sa.Text(), nullable=False),
        sa.Column("options", JSON, nullable=False),
        sa.Column("ctime", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_computers")),
        sa.UniqueConstraint("label", name=op.f("uq_computers_label")),
        sa.UniqueConstraint("uuid", name=op.f("uq_computers_uuid")),
    )
    op.create_table(
        "workers",
        sa.Column("id", sa.String(length=255), nullable=False),
        sa.Column("hostname", sa.String(length=255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("started", sa.Float(), nullable=False),
        sa.Column("heartbeat", sa.Float(), nullable=False),
        sa.Column("info", JSON, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_workers")),
    )
    op.create_table(
        "computer_configs",
        sa.Column("id", PK, autoincrement=True, nullable=False),
        sa.Column("computer_id", PK, nullable=False),
        sa.Column("user_email", sa.String(length=255), nullable=False),
        sa.Column("params", JSON, nullable=False),
        sa.ForeignKeyConstraint(
            ["computer_id"],
            ["computers.id"],
            name=op.f("fk_computer_configs_computer_id_computers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_computer_configs")),
        sa.UniqueConstraint(
            "computer_id", "user_email", name=op.f("uq_computer_configs_computer_id_user_email")
        ),
    )
    op.create_table(
        "nodes",
        sa.Column("id", PK, autoincrement=True, nullable=False),
        sa.Column("uuid", sa.String(length=36), nullable=False),
        sa.Column("node_type", sa.String(length=255), nullable=False),
        sa.Column("process_type", sa.String(length=255), nullable=True),
        sa.Column("label", sa.String(length=255), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("ctime", sa.DateTime(timezone=True), nullable=False),
        sa.Column("mtime", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attributes", JSON, nullable=False),
        sa.Column("extras", JSON, nullable=False),
        sa.Column("files", JSON, nullable=False),
        sa.Column("node_hash", sa.String(length=64), nullable=True),
        sa.Column("computer_id", PK, nullable=True),
        sa.ForeignKeyConstraint(
            ["computer_id"],
            ["computers.id"],
            name=op.f("fk_nodes_computer_id_computers"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_nodes")),
        sa.UniqueConstraint("uuid", name=op.f("uq_nodes_uuid")),
    )
    op.create_index(op.f("ix_nodes_ctime"), "nodes", ["ctime"], unique=False)
    op.create_index(op.f("ix_nodes_node_hash"), "nodes", ["node_hash"], unique=False)
    op.create_index(op.f("ix_nodes_node_type"), "nodes", ["node_type"], unique=False)
    op.create_index(op.f("ix_nodes_process_type"), "nodes", ["process_type"], unique=False)
    op.create_table(
        "links",
        sa.Column("id", PK, autoincrement=True, nullable=False),
        sa.Column("input_id", PK, nullable=False),
        sa.Column("output_id", PK, nullable=False),
        sa.Column("link_type", sa.String(length=16), nullable=False),
        sa.Column("label", sa.String(length=255), nullable=False),
        sa.ForeignKeyConstraint(
            ["input_id"], ["nodes.id"], name=op.f("fk_links_input_id_nodes"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["output_id"], ["nodes.id"], name=op.f("fk_links_output_id_nodes"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_links")),
    )
    op.create_index(op.f("ix_links_input_id"), "links", ["input_id"], unique=False)
    op.create_index(op.f("ix_links_output_id"), "links", ["output_id"], unique=False)
    op.create_table(
        "logs",
        sa.Column("id", PK, autoincrement=True, nullable=False),
        sa.Column("node_id", PK, nullable=False),
        sa.Column("time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("level", sa.String(length=16), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("extra", JSON, nullable=False),
        sa.ForeignKeyConstraint(
            ["node_id"], ["nodes.id"], name=op.f("fk_logs_node_id_nodes"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_logs")),
    )
    op.create_index(op.f("ix_logs_node_id"), "logs", ["node_id"], unique=False)
    op.create_table(
        "process_checkpoints",
        sa.Column("id", PK, autoincrement=True, nullable=False),
        sa.Column("process_id", PK, nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("step", sa.String(length=255), nullable=True),
        sa.Column("ctime", sa.DateTime(timezone=True), nullable=False),
        sa.Column("data", JSON, nullable=False),
        sa.ForeignKeyConstraint(
            ["process_id"],
            ["nodes.id"],
            name=op.f("fk_process_checkpoints_process_id_nodes"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_process_checkpoints")),
        sa.UniqueConstraint("process_id", "seq", name=op.f("uq_process_checkpoints_process_id_seq")),
    )
    op.create_table(
        "processes",
        sa.Column("node_id", PK, nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("paused", sa.Boolean(), nullable=False),
        sa.Column("exit_status", sa.Integer(), nullable=True),
        sa.Column("exit_message", sa.Text(), nullable=True),
        sa.Column("exception", sa.Text(), nullable=True),
        sa.Column("process_label", sa.String(length=255), nullable=False),
        sa.Column("status", sa.Text(), nullable=True),
        sa.Column("checkpoint", JSON, nullable=True),
        sa.Column("checkpoint_seq", sa.Integer(), nullable=False),
        sa.Column("submitted", sa.Boolean(), nullable=False),
        sa.Column("lease_owner", sa.String(length=255), nullable=True),
        sa.Column("lease_expires", sa.Float(), nullable=True),
        sa.Column("caller_id", PK, nullable=True),
        sa.Column("call_key", sa.String(length=255), nullable=True),
        sa.Column("wake_at", sa.Float(), nullable=True),
        sa.Column("mtime", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["caller_id"], ["nodes.id"], name=op.f("fk_processes_caller_id_nodes"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["node_id"], ["nodes.id"], name=op.f("fk_processes_node_id_nodes"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("node_id", name=op.f("pk_processes")),
    )
    op.create_index(op.f("ix_processes_caller_id"), "processes", ["caller_id"], unique=False)
    op.create_index(op.f("ix_processes_lease_owner"), "processes", ["lease_owner"], unique=False)
    op.create_index(
        "ix_processes_runnable", "processes", ["submitted", "state", "lease_expires"], unique=False
    )
    op.create_index(op.f("ix_processes_state"), "processes", ["state"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_processes_state"), table_name="processes")
    op.drop_index("ix_processes_runnable", table_name="processes")
    op.drop_index(op.f("ix_processes_lease_owner"), table_name="processes")
    op.drop_index(op.f("ix_processes_caller_id"), table_name="processes")
    op.drop_table("processes")
    op.drop_table("process_checkpoints")
    op.drop_index(op.f("ix_logs_node_id"), table_name="logs")
    op.drop_table("logs")
    op.drop_index(op.f("ix_links_output_id"), table_name="links")
    op.drop_index(op.f("ix_links_input_id"), table_name="links")
    op.drop_table("links")
    op.drop_index(op.f("ix_nodes_process_type"), table_name="nodes")
    op.drop_index(op.f("ix_nodes_node_type"), table_name="nodes")
    op.drop_index(op.f("ix_nodes_node_hash"), table_name="nodes")
    op.drop_index(op.f("ix_nodes_ctime"), table_name="nodes")
    op.drop_table("nodes")
    op.drop_table("computer_configs")
    op.drop_table("workers")
    op.drop_table("computers")
    op.drop_index(op.f("ix_broker_messages_process_id"), table_name="broker_messages")
    op.drop_index(op.f("ix_broker_messages_created"), table_name="broker_messages")
    op.drop_table("broker_messages")
