"""Tuning: trial rows, child runs (``runs.parent_run_id``) and PBT population events.

Revision ID: 0002
Revises: 0001
"""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

UTC_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    # batch mode: SQLite cannot add a foreign-key column with ALTER TABLE alone.
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("parent_run_id", sa.String(32)))
        batch.create_foreign_key("fk_runs_parent_run_id", "runs", ["parent_run_id"], ["id"],
                                 ondelete="CASCADE")
        batch.create_index("ix_runs_parent_run_id", ["parent_run_id"])
    op.create_table(
        "trials",
        sa.Column("run_id", sa.String(32), sa.ForeignKey("runs.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("node_id", sa.String(200), primary_key=True),
        sa.Column("number", sa.Integer, primary_key=True),
        sa.Column("trial_run_id", sa.String(32), sa.ForeignKey("runs.id", ondelete="SET NULL"),
                  index=True),
        sa.Column("params", sa.Text, nullable=False),
        sa.Column("objective", sa.Float),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("started_at", UTC_TIME),
        sa.Column("ended_at", UTC_TIME),
        sa.Column("seconds", sa.Float, nullable=False),
        sa.Column("error", sa.Text),
        sa.Column("attributes", sa.Text),
    )
    op.create_table(
        "population_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(32), sa.ForeignKey("runs.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("node_id", sa.String(200), nullable=False),
        sa.Column("member", sa.Integer, nullable=False),
        sa.Column("step", sa.Integer, nullable=False),
        sa.Column("event", sa.String(20), nullable=False),
        sa.Column("from_member", sa.Integer),
        sa.Column("old_params", sa.Text),
        sa.Column("new_params", sa.Text),
        sa.Column("score", sa.Float),
        sa.Column("from_score", sa.Float),
        sa.Column("checkpoint_id", sa.String(32)),
        sa.Column("logged_at", UTC_TIME, nullable=False),
    )
    op.create_index("ix_population_events_run", "population_events",
                    ["run_id", "node_id", "member"])


def downgrade() -> None:
    op.drop_table("population_events")
    op.drop_table("trials")
    with op.batch_alter_table("runs") as batch:
        batch.drop_index("ix_runs_parent_run_id")
        batch.drop_constraint("fk_runs_parent_run_id", type_="foreignkey")
        batch.drop_column("parent_run_id")
