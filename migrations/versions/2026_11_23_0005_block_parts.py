"""Block ciphertexts move to block_parts, in pieces of 8,000 bytes stored inline.

A 520 kB ciphertext in one bytea column was stored through TOAST: about 260
chunks of 2 kB, each a row of the TOAST table and an entry of its index. In
pieces of a page each, with no TOAST (STORAGE PLAIN), the same bytes are 65
rows; measured, PostgreSQL spent 2.7 ms of CPU writing them instead of 4.5.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_CIPHERTEXT_COMMENT = "AES-GCM ciphertext of packed (sequence, vector) entries."


def upgrade() -> None:
    op.create_table(
        "block_parts",
        sa.Column("index_id", sa.BigInteger(), nullable=False),
        sa.Column("block_id", sa.BigInteger(), nullable=False),
        sa.Column("part", sa.Integer(), nullable=False,
                  comment="Position of the piece in its block's ciphertext."),
        sa.Column("data", sa.LargeBinary(), nullable=False,
                  comment="Up to 8,000 bytes of the block's AES-GCM ciphertext."),
        sa.PrimaryKeyConstraint("index_id", "block_id", "part"),
        comment="The ciphertext of each vector block, in pieces small enough to stay in a page.",
    )
    op.execute("ALTER TABLE block_parts ALTER COLUMN data SET STORAGE PLAIN")
    op.execute(
        """
        INSERT INTO block_parts (index_id, block_id, part, data)
        SELECT b.index_id, b.block_id, k, substring(b.ciphertext FROM k * 8000 + 1 FOR 8000)
        FROM vector_blocks b, generate_series(0, (octet_length(b.ciphertext) - 1) / 8000) AS k
        """
    )
    op.drop_column("vector_blocks", "ciphertext")


def downgrade() -> None:
    op.add_column("vector_blocks", sa.Column("ciphertext", sa.LargeBinary(), nullable=True,
                                             comment=_CIPHERTEXT_COMMENT))
    op.execute(
        """
        UPDATE vector_blocks b SET ciphertext = (
            SELECT string_agg(p.data, ''::bytea ORDER BY p.part) FROM block_parts p
            WHERE p.index_id = b.index_id AND p.block_id = b.block_id
        )
        """
    )
    op.alter_column("vector_blocks", "ciphertext", existing_type=sa.LargeBinary(), nullable=False)
    op.drop_table("block_parts")
