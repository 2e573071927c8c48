"""IVF training: encrypted centroids per index version, live and trained item counts.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Ciphertext does not compress: skip PostgreSQL's compression attempt on every write.
    op.execute("ALTER TABLE items ALTER COLUMN payload SET STORAGE EXTERNAL")
    op.execute("ALTER TABLE vector_blocks ALTER COLUMN ciphertext SET STORAGE EXTERNAL")
    op.add_column(
        "indexes",
        sa.Column("n_items", sa.BigInteger(), nullable=False, server_default="0",
                  comment="Live items."),
    )
    op.execute(
        "UPDATE indexes SET n_items = (SELECT count(*) FROM items WHERE index_id = indexes.id)"
    )
    op.add_column(
        "indexes",
        sa.Column("trained_vectors", sa.BigInteger(), nullable=False, server_default="0",
                  comment="Items when the active version was trained (drives retraining)."),
    )
    op.create_table(
        "index_centroids",
        sa.Column("index_id", sa.BigInteger(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False,
                  comment="Index version these centroids define."),
        sa.Column("n_lists", sa.Integer(), nullable=False, comment="Number of centroids."),
        sa.Column("ciphertext", sa.LargeBinary(), nullable=False,
                  comment="AES-GCM ciphertext of centroids."),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
        sa.PrimaryKeyConstraint("index_id", "version", name="pk_index_centroids"),
        comment="Trained IVF centroids per index version, encrypted.",
    )


def downgrade() -> None:
    op.execute("ALTER TABLE vector_blocks ALTER COLUMN ciphertext SET STORAGE EXTENDED")
    op.execute("ALTER TABLE items ALTER COLUMN payload SET STORAGE EXTENDED")
    op.drop_table("index_centroids")
    op.drop_column("indexes", "trained_vectors")
    op.drop_column("indexes", "n_items")
