"""Objectives: every objective of a multi-objective trial, in the trial's row.

``trials.objective`` keeps a one-objective tuner's value (and the first objective of a
multi-objective one, so queries over ``objective`` keep working); ``trials.objectives``
holds the whole vector as a JSON list (NULL for one objective), so the web UI and
reports draw fronts from the store without reading child runs.

Revision ID: 0006
Revises: 0005
"""
import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("trials") as batch:
        batch.add_column(sa.Column("objectives", sa.Text))


def downgrade() -> None:
    with op.batch_alter_table("trials") as batch:
        batch.drop_column("objectives")
