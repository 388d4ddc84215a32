"""Source files: the files nodes read, with their content hashes, keyed by cache key.

Revision ID: 0003
Revises: 0002
"""
import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "source_files",
        sa.Column("cache_key", sa.String(64), primary_key=True),
        sa.Column("field", sa.String(200), primary_key=True),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("hash", sa.String(64)),
        sa.Column("size", sa.Integer),
    )


def downgrade() -> None:
    op.drop_table("source_files")
