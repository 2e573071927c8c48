"""Each vector stored once: item payloads name the block their vector went into, and
list_maps records the list every training run put each vector in.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_PAYLOAD_BEFORE = "AES-GCM ciphertext of id, contents, metadata and vector."
_PAYLOAD_AFTER = (
    "AES-GCM ciphertext of id, contents, metadata and where the vector is stored "
    "(older rows: the vector itself)."
)


def upgrade() -> None:
    op.create_table(
        "list_maps",
        sa.Column("index_id", sa.BigInteger(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False,
                  comment="Index version whose lists this maps."),
        sa.Column("first_seq", sa.BigInteger(), nullable=False,
                  comment="Lowest write sequence in the page."),
        sa.Column("last_seq", sa.BigInteger(), nullable=False,
                  comment="Highest write sequence in the page."),
        sa.Column("ciphertext", sa.LargeBinary(), nullable=False,
                  comment="AES-GCM ciphertext of sorted (sequence, inverted list) pairs."),
        sa.PrimaryKeyConstraint("index_id", "version", "first_seq"),
        comment="Which list a training run put each vector in, so a read finds the vector's block.",
    )
    op.execute("ALTER TABLE list_maps ALTER COLUMN ciphertext SET STORAGE EXTERNAL")
    op.alter_column("items", "payload", existing_type=sa.LargeBinary(), existing_nullable=False,
                    comment=_PAYLOAD_AFTER, existing_comment=_PAYLOAD_BEFORE)


def downgrade() -> None:
    # Rows written since hold no vector; the previous code cannot read them.
    op.execute(
        "DO $$ BEGIN IF EXISTS (SELECT 1 FROM indexes WHERE n_items > 0) THEN "
        "RAISE EXCEPTION 'items written by revision 0004 keep their vector only in blocks; "
        "export the indexes and re-import them after downgrading'; END IF; END $$"
    )
    op.alter_column("items", "payload", existing_type=sa.LargeBinary(), existing_nullable=False,
                    comment=_PAYLOAD_BEFORE, existing_comment=_PAYLOAD_AFTER)
    op.drop_table("list_maps")
