"""The store's own facts, non-finite metric values, and the pipeline file's hash.

* ``store_info``: key/value facts about the store itself; ``artifact_root`` records where
  the store keeps its blobs, written when the store is created (or first opened by this
  version) and used from then on.
* ``metrics.value`` becomes nullable: NaN is stored as NULL (SQLite cannot keep a NaN in a
  REAL column, and one convention for both databases keeps filters alike); ±inf are
  stored as they are.
* ``runs.source_hash``: the content hash of the pipeline file a run was started from, so
  ``flowopt pbt replay --pipeline FILE`` can check it is handed the same file.

Revision ID: 0004
Revises: 0003
"""
import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "store_info",
        sa.Column("key", sa.String(40), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )
    # batch mode: SQLite cannot change a column's nullability with ALTER TABLE.
    with op.batch_alter_table("metrics") as batch:
        batch.alter_column("value", existing_type=sa.Float, nullable=True)
    op.add_column("runs", sa.Column("source_hash", sa.String(64)))


def downgrade() -> None:
    op.drop_column("runs", "source_hash")
    with op.batch_alter_table("metrics") as batch:
        batch.alter_column("value", existing_type=sa.Float, nullable=False)
    op.drop_table("store_info")
