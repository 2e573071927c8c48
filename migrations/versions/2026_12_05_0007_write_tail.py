"""A write tail per index: small writes into a trained index go to a few tail blocks
that every query scans, folded into the lists later; the layout epoch lets a
process extend its cached block listing instead of reading it again; and the
probes a query needs, as its training run measured them.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("indexes", sa.Column(
        "layout_epoch", sa.BigInteger(), nullable=False, server_default="0",
        comment="Counts rewrites that removed blocks of the active version (folds, "
        "compactions): a cached block listing with the same epoch only misses newer blocks.",
    ))
    op.add_column("indexes", sa.Column(
        "tail_blocks", sa.Integer(), nullable=False, server_default="0",
        comment="Blocks in the active version's write tail (recent small writes).",
    ))
    op.add_column("indexes", sa.Column(
        "tail_entries", sa.Integer(), nullable=False, server_default="0",
        comment="Entries in the active version's write tail, stale included.",
    ))
    op.add_column("indexes", sa.Column(
        "auto_n_probes", sa.Integer(), nullable=False, server_default="0",
        comment="Lists a query probes when it does not say, measured by the training run "
        "of the active version; 0: from the number of lists.",
    ))


def downgrade() -> None:
    # Tail blocks are ordinary blocks of an extra list that older code does not
    # scan: refuse while any index holds some, rather than hide their vectors.
    op.execute(
        "DO $$ BEGIN IF EXISTS (SELECT 1 FROM indexes WHERE tail_blocks > 0) THEN "
        "RAISE EXCEPTION 'indexes hold write-tail blocks; train them (which folds the tail) "
        "before downgrading'; END IF; END $$"
    )
    for column in ("auto_n_probes", "tail_entries", "tail_blocks", "layout_epoch"):
        op.drop_column("indexes", column)
