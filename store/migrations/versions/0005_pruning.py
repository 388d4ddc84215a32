"""Early stopping: trials record the training steps they ran and the rung they reached;
a tuner's pruner events (add, issue, report with its checkpoint, fail, and what the
strategy was told) are kept in order, with the pruner's state as of its last decision,
so that a killed run resumes with its brackets intact.

Revision ID: 0005
Revises: 0004
"""
import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

UTC_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("trials") as batch:
        batch.add_column(sa.Column("steps", sa.Integer))
        batch.add_column(sa.Column("rung", sa.Integer))
    op.create_table(
        "pruner_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(32), sa.ForeignKey("runs.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("node_id", sa.String(200), nullable=False),
        sa.Column("event", sa.String(10), nullable=False),
        sa.Column("number", sa.Integer, nullable=False),
        sa.Column("step", sa.Integer),
        sa.Column("value", sa.Float),
        sa.Column("checkpoint_id", sa.String(32)),
        sa.Column("status", sa.String(20)),
        sa.Column("logged_at", UTC_TIME, nullable=False),
    )
    op.create_index("ix_pruner_events_run", "pruner_events", ["run_id", "node_id"])
    op.create_table(
        "pruner_states",
        sa.Column("run_id", sa.String(32), sa.ForeignKey("runs.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("node_id", sa.String(200), primary_key=True),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("updated_at", UTC_TIME, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("pruner_states")
    op.drop_index("ix_pruner_events_run", table_name="pruner_events")
    op.drop_table("pruner_events")
    with op.batch_alter_table("trials") as batch:
        batch.drop_column("rung")
        batch.drop_column("steps")
