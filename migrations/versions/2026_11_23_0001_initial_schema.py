"""Initial schema: API keys, indexes, encrypted items and vector blocks.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("tenant", sa.Text(), nullable=False,
                  comment="Tenant owning the key and its indexes."),
        sa.Column("name", sa.Text(), nullable=False, comment="Operator-chosen label of the key."),
        sa.Column("prefix", sa.Text(), nullable=False,
                  comment="Public first characters of the key, for lookup."),
        sa.Column("key_hash", sa.LargeBinary(), nullable=False, comment="SHA-256 of the full key."),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
        sa.Column("revoked_at", sa.DateTime(timezone=True),
                  comment="Set when revoked; NULL while valid."),
        sa.PrimaryKeyConstraint("id", name="pk_api_keys"),
        sa.UniqueConstraint("prefix", name="uq_api_keys_prefix"),
        comment="API keys (X-API-Key), stored only as hashes.",
    )
    op.create_table(
        "indexes",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("tenant", sa.Text(), nullable=False, comment="Tenant that owns the index."),
        sa.Column("name", sa.Text(), nullable=False, comment="Index name as clients address it."),
        sa.Column("dimension", sa.Integer(), nullable=False,
                  comment="Vector dimension; 0 until first upsert."),
        sa.Column("metric", sa.Text(), nullable=False,
                  comment="euclidean, squared_euclidean or cosine."),
        sa.Column("key_provider", sa.Text(), nullable=False,
                  comment="Who wraps the DEK: sdk (client key)."),
        sa.Column("wrapped_dek", sa.LargeBinary(), nullable=False,
                  comment="AES-GCM-wrapped data key."),
        sa.Column("embedding_model", sa.Text(), comment="Model that embeds contents, if any."),
        sa.Column("metadata_schema", postgresql.JSONB(),
                  comment="Declared metadata field policies (names only)."),
        sa.Column("next_seq", sa.BigInteger(), nullable=False, server_default="0",
                  comment="Last write sequence handed out to this index's items."),
        sa.Column("active_version", sa.Integer(), nullable=False, server_default="0",
                  comment="Index version whose blocks searches read; 0 = untrained."),
        sa.Column("n_lists", sa.Integer(), nullable=False, server_default="1",
                  comment="Inverted lists."),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
        sa.PrimaryKeyConstraint("id", name="pk_indexes"),
        sa.UniqueConstraint("tenant", "name", name="uq_indexes_tenant_name"),
        comment="One row per vector index: configuration and its wrapped data key.",
    )
    op.create_table(
        "items",
        sa.Column("index_id", sa.BigInteger(), nullable=False),
        sa.Column("id_token", sa.LargeBinary(), nullable=False,
                  comment="HMAC of the item id (16 bytes)."),
        sa.Column("seq", sa.BigInteger(), nullable=False,
                  comment="Write sequence of the current version."),
        sa.Column("payload", sa.LargeBinary(), nullable=False,
                  comment="AES-GCM ciphertext of id, contents, metadata and vector."),
        sa.PrimaryKeyConstraint("index_id", "id_token", name="pk_items"),
        sa.UniqueConstraint("index_id", "seq", name="uq_items_index_id_seq"),
        comment="One row per live item; everything but its size is ciphertext.",
    )
    op.create_table(
        "vector_blocks",
        sa.Column("index_id", sa.BigInteger(), nullable=False),
        sa.Column("block_id", sa.BigInteger(), nullable=False,
                  comment="Write sequence of the first entry (or a fresh one for merged blocks)."),
        sa.Column("version", sa.Integer(), nullable=False,
                  comment="Index version the block belongs to."),
        sa.Column("list_tag", sa.LargeBinary(), nullable=False,
                  comment="HMAC tag of the inverted list."),
        sa.Column("n_vectors", sa.Integer(), nullable=False,
                  comment="Entries in the block, stale included."),
        sa.Column("ciphertext", sa.LargeBinary(), nullable=False,
                  comment="AES-GCM ciphertext of packed (sequence, vector) entries."),
        sa.PrimaryKeyConstraint("index_id", "block_id", name="pk_vector_blocks"),
        comment="Vectors packed per inverted list; entries whose sequence no item holds are stale.",
    )
    op.create_index(
        "ix_vector_blocks_index_id_version_list_tag",
        "vector_blocks",
        ["index_id", "version", "list_tag"],
    )


def downgrade() -> None:
    op.drop_index("ix_vector_blocks_index_id_version_list_tag", table_name="vector_blocks")
    op.drop_table("vector_blocks")
    op.drop_table("items")
    op.drop_table("indexes")
    op.drop_table("api_keys")
