"""The first schema: runs, params, executions, artifacts, lineage edges, metrics.

Revision ID: 0001
Revises:
"""
import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

UTC_TIME = sa.DateTime(timezone=True)
# JSON columns are TEXT holding JSON (see flowopt.store.schema.JSONText).


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("pipeline", sa.String(200), nullable=False, index=True),
        sa.Column("status", sa.String(20), nullable=False, index=True),
        sa.Column("seed", sa.Integer, nullable=False),
        sa.Column("spec", sa.Text, nullable=False),
        sa.Column("source", sa.Text),
        sa.Column("host", sa.String(200)),
        sa.Column("pid", sa.Integer),
        sa.Column("flowopt_version", sa.String(40)),
        sa.Column("started_at", UTC_TIME, nullable=False, index=True),
        sa.Column("ended_at", UTC_TIME),
        sa.Column("heartbeat_at", UTC_TIME),
        sa.Column("error", sa.Text),
    )
    op.create_table(
        "params",
        sa.Column("run_id", sa.String(32), sa.ForeignKey("runs.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("key", sa.String(200), primary_key=True),
        sa.Column("value", sa.Text),
        sa.Column("value_num", sa.Float),
    )
    op.create_table(
        "executions",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("run_id", sa.String(32), sa.ForeignKey("runs.id", ondelete="CASCADE"),
                  nullable=False, index=True),
        sa.Column("node_id", sa.String(200), nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("kind", sa.String(200), nullable=False),
        sa.Column("kind_version", sa.Integer, nullable=False),
        sa.Column("cache_key", sa.String(64), nullable=False, index=True),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("config", sa.Text, nullable=False),
        sa.Column("started_at", UTC_TIME),
        sa.Column("ended_at", UTC_TIME),
        sa.Column("seconds", sa.Float, nullable=False),
        sa.Column("error", sa.Text),
    )
    op.create_table(
        "artifacts",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("hash", sa.String(64), nullable=False, index=True),
        sa.Column("type", sa.String(40), nullable=False),
        sa.Column("format", sa.String(40), nullable=False),
        sa.Column("size", sa.Integer, nullable=False),
        sa.Column("inline", sa.LargeBinary),
        sa.Column("execution_id", sa.String(32),
                  sa.ForeignKey("executions.id", ondelete="SET NULL"), index=True),
        sa.Column("port", sa.String(200)),
        sa.Column("created_at", UTC_TIME, nullable=False),
    )
    op.create_table(
        "edges",
        sa.Column("execution_id", sa.String(32),
                  sa.ForeignKey("executions.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("role", sa.String(6), primary_key=True),
        sa.Column("port", sa.String(200), primary_key=True),
        sa.Column("artifact_id", sa.String(32), sa.ForeignKey("artifacts.id", ondelete="CASCADE"),
                  nullable=False, index=True),
    )
    op.create_table(
        "metrics",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(32), sa.ForeignKey("runs.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("node_id", sa.String(200), nullable=False),
        sa.Column("key", sa.String(200), nullable=False),
        sa.Column("step", sa.Integer),
        sa.Column("value", sa.Float, nullable=False),
        sa.Column("logged_at", UTC_TIME, nullable=False),
    )
    op.create_index("ix_metrics_run_key", "metrics", ["run_id", "node_id", "key"])


def downgrade() -> None:
    for table in ("metrics", "edges", "artifacts", "executions", "params", "runs"):
        op.drop_table(table)
