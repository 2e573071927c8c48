"""The metric column's comment names dotproduct (distance = minus the inner product).

Only the comment changes: the column is text, and older rows keep their metric.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.alter_column(
        "indexes", "metric", existing_type=sa.Text(), existing_nullable=False,
        comment="euclidean, squared_euclidean, cosine or dotproduct.",
        existing_comment="euclidean, squared_euclidean or cosine.",
    )


def downgrade() -> None:
    # Dot product indexes stay (deleting data is no downgrade's business); a
    # ciphervec from before this revision answers 500 on them.
    op.alter_column(
        "indexes", "metric", existing_type=sa.Text(), existing_nullable=False,
        comment="euclidean, squared_euclidean or cosine.",
        existing_comment="euclidean, squared_euclidean, cosine or dotproduct.",
    )
