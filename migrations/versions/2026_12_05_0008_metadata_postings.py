"""The encrypted metadata index: posting lists of write sequences per metadata term,
addressed by keyed term tokens, for filters answered without decrypting every item.

Indexes that already hold items have no postings for them (building them needs
the index key): they are marked incomplete and their filters keep scanning.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "metadata_postings",
        sa.Column("index_id", sa.BigInteger(), nullable=False),
        sa.Column("token", sa.LargeBinary(), nullable=False,
                  comment="HMAC token of a metadata term (field path and value)."),
        sa.Column("chunk_id", sa.BigInteger(), nullable=False,
                  comment="Random id of the chunk within its term's list."),
        sa.Column("n_seqs", sa.Integer(), nullable=False,
                  comment="Sequences in the chunk, stale included."),
        sa.Column("ciphertext", sa.LargeBinary(), nullable=False,
                  comment="AES-GCM ciphertext of the chunk's ascending write sequences."),
        sa.PrimaryKeyConstraint("index_id", "token", "chunk_id"),
        comment="Posting lists of the metadata index; sequences no item holds are stale.",
    )
    op.add_column("indexes", sa.Column(
        "postings_complete", sa.Boolean(), nullable=False, server_default="false",
        comment="Whether every item's metadata terms are in metadata_postings.",
    ))
    op.execute("UPDATE indexes SET postings_complete = true WHERE next_seq = 0")


def downgrade() -> None:
    op.drop_column("indexes", "postings_complete")
    op.drop_table("metadata_postings")
