"""KMS-backed index keys (the KMSBlob beside the wrapped DEK), key rotation, per-index users.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_PROVIDER_BEFORE = "Who wraps the DEK: sdk (client key)."
_PROVIDER_AFTER = "Who wraps the DEK: sdk (the client's index_key), local or aws (a KMS)."
_WRAPPED_BEFORE = "AES-GCM-wrapped data key."
_WRAPPED_AFTER = "The data key, wrapped by the client's key (AES-GCM) or by the KMS."


def upgrade() -> None:
    op.alter_column("indexes", "key_provider", existing_type=sa.Text(), existing_nullable=False,
                    comment=_PROVIDER_AFTER, existing_comment=_PROVIDER_BEFORE)
    op.alter_column("indexes", "wrapped_dek", existing_type=sa.LargeBinary(),
                    existing_nullable=False, comment=_WRAPPED_AFTER,
                    existing_comment=_WRAPPED_BEFORE)
    op.add_column("indexes", sa.Column(
        "kms_name", sa.Text(), comment="KMS registry entry that wrapped the DEK; NULL on sdk."))
    op.add_column("indexes", sa.Column(
        "kms_key_id", sa.Text(),
        comment="KMS key that wrapped the DEK (local master key id, AWS key id or alias)."))
    op.add_column("indexes", sa.Column(
        "kms_context", postgresql.JSONB(),
        comment="Encryption context the KMS wrap is bound to (names the index); NULL on sdk."))
    op.add_column("indexes", sa.Column(
        "key_version", sa.Integer(), nullable=False, server_default="1",
        comment="1 at creation, incremented by every key rotation (re-wrap of the DEK)."))
    op.add_column("indexes", sa.Column(
        "key_created_at", sa.DateTime(timezone=True), nullable=False,
        server_default=sa.func.now(),
        comment="When the DEK was last wrapped (creation or rotation)."))
    op.add_column("api_keys", sa.Column(
        "index_id", sa.BigInteger(),
        comment="Index a per-index user key is limited to; NULL for tenant (root) keys."))
    op.add_column("api_keys", sa.Column(
        "permissions", postgresql.ARRAY(sa.Text()),
        comment="Permissions of a per-index user key (read, write, admin); NULL for tenant keys."))
    op.create_foreign_key("fk_api_keys_index_id_indexes", "api_keys", "indexes",
                          ["index_id"], ["id"], ondelete="CASCADE")
    op.create_index("ix_api_keys_index_id", "api_keys", ["index_id"])


def downgrade() -> None:
    # The previous schema has no KMS: refuse rather than strand (or drop) KMS-backed indexes.
    op.execute(
        "DO $$ BEGIN IF EXISTS (SELECT 1 FROM indexes WHERE key_provider <> 'sdk') THEN "
        "RAISE EXCEPTION 'KMS-backed indexes exist: rotate them to an index_key "
        "(ciphervec keys rotate-index) or delete them before downgrading'; END IF; END $$"
    )
    # User keys exist only for one index; without the columns they would become tenant keys.
    op.execute("DELETE FROM api_keys WHERE index_id IS NOT NULL")
    op.drop_index("ix_api_keys_index_id", table_name="api_keys")
    op.drop_constraint("fk_api_keys_index_id_indexes", "api_keys", type_="foreignkey")
    op.drop_column("api_keys", "permissions")
    op.drop_column("api_keys", "index_id")
    for column in ("key_created_at", "key_version", "kms_context", "kms_key_id", "kms_name"):
        op.drop_column("indexes", column)
    op.alter_column("indexes", "wrapped_dek", existing_type=sa.LargeBinary(),
                    existing_nullable=False, comment=_WRAPPED_BEFORE,
                    existing_comment=_WRAPPED_AFTER)
    op.alter_column("indexes", "key_provider", existing_type=sa.Text(), existing_nullable=False,
                    comment=_PROVIDER_BEFORE, existing_comment=_PROVIDER_AFTER)
