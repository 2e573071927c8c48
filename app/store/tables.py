"""Table definitions (SQLAlchemy Core), mirrored by the Alembic revisions.

Every key of an item-level table starts with `index_id`, so the tables can be
distributed or partitioned by index. Item-level tables carry no foreign key to
`indexes` (a per-row check costs more than the insert itself); deleting an
index deletes its rows explicitly, in the same transaction. Columns that hold client data hold only
ciphertext or keyed tokens; the comments say what a DBA can learn from each.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("tenant", Text, nullable=False, comment="Tenant owning the key and its indexes."),
    Column("name", Text, nullable=False, comment="Operator-chosen label of the key."),
    Column(
        "prefix", Text, nullable=False, comment="Public first characters of the key, for lookup."
    ),
    Column("key_hash", LargeBinary, nullable=False, comment="SHA-256 of the full key."),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("revoked_at", DateTime(timezone=True), comment="Set when revoked; NULL while valid."),
    Column(
        "index_id", BigInteger, ForeignKey("indexes.id", ondelete="CASCADE"),
        comment="Index a per-index user key is limited to; NULL for tenant (root) keys.",
    ),
    Column(
        "permissions", ARRAY(Text),
        comment="Permissions of a per-index user key (read, write, admin); NULL for tenant keys.",
    ),
    UniqueConstraint("prefix"),
    Index(None, "index_id"),
    comment="API keys (X-API-Key), stored only as hashes.",
)

indexes = Table(
    "indexes",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("tenant", Text, nullable=False, comment="Tenant that owns the index."),
    Column("name", Text, nullable=False, comment="Index name as clients address it."),
    Column("dimension", Integer, nullable=False, comment="Vector dimension; 0 until first upsert."),
    Column(
        "metric", Text, nullable=False,
        comment="euclidean, squared_euclidean, cosine or dotproduct.",
    ),
    Column(
        "key_provider", Text, nullable=False,
        comment="Who wraps the DEK: sdk (the client's index_key), local or aws (a KMS).",
    ),
    Column(
        "wrapped_dek", LargeBinary, nullable=False,
        comment="The data key, wrapped by the client's key (AES-GCM) or by the KMS.",
    ),
    Column("kms_name", Text, comment="KMS registry entry that wrapped the DEK; NULL on sdk."),
    Column(
        "kms_key_id", Text,
        comment="KMS key that wrapped the DEK (local master key id, AWS key id or alias).",
    ),
    Column(
        "kms_context", JSONB,
        comment="Encryption context the KMS wrap is bound to (names the index); NULL on sdk.",
    ),
    Column(
        "key_version", Integer, nullable=False, server_default="1",
        comment="1 at creation, incremented by every key rotation (re-wrap of the DEK).",
    ),
    Column(
        "key_created_at", DateTime(timezone=True), nullable=False, server_default=func.now(),
        comment="When the DEK was last wrapped (creation or rotation).",
    ),
    Column("embedding_model", Text, comment="Model that embeds contents, if any."),
    Column("metadata_schema", JSONB, comment="Declared metadata field policies (names only)."),
    Column(
        "next_seq", BigInteger, nullable=False, server_default="0",
        comment="Last write sequence handed out to this index's items.",
    ),
    Column(
        "active_version", Integer, nullable=False, server_default="0",
        comment="Index version whose blocks searches read; 0 = untrained.",
    ),
    Column("n_lists", Integer, nullable=False, server_default="1", comment="Inverted lists."),
    Column(
        "n_items", BigInteger, nullable=False, server_default="0", comment="Live items."
    ),
    Column(
        "trained_vectors", BigInteger, nullable=False, server_default="0",
        comment="Items when the active version was trained (drives retraining).",
    ),
    Column(
        "layout_epoch", BigInteger, nullable=False, server_default="0",
        comment="Counts rewrites that removed blocks of the active version (folds, "
        "compactions): a cached block listing with the same epoch only misses newer blocks.",
    ),
    Column(
        "tail_blocks", Integer, nullable=False, server_default="0",
        comment="Blocks in the active version's write tail (recent small writes).",
    ),
    Column(
        "tail_entries", Integer, nullable=False, server_default="0",
        comment="Entries in the active version's write tail, stale included.",
    ),
    Column(
        "auto_n_probes", Integer, nullable=False, server_default="0",
        comment="Lists a query probes when it does not say, measured by the training run "
        "of the active version; 0: from the number of lists.",
    ),
    Column(
        "postings_complete", Boolean, nullable=False, server_default="false",
        comment="Whether every item's metadata terms are in metadata_postings.",
    ),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    UniqueConstraint("tenant", "name"),
    comment="One row per vector index: configuration and its wrapped data key.",
)

items = Table(
    "items",
    metadata,
    Column("index_id", BigInteger, nullable=False),
    Column("id_token", LargeBinary, nullable=False, comment="HMAC of the item id (16 bytes)."),
    Column("seq", BigInteger, nullable=False, comment="Write sequence of the current version."),
    Column(
        "payload", LargeBinary, nullable=False,
        comment=(
            "AES-GCM ciphertext of id, contents, metadata and where the vector is stored "
            "(older rows: the vector itself)."
        ),
    ),
    PrimaryKeyConstraint("index_id", "id_token"),
    UniqueConstraint("index_id", "seq"),
    comment="One row per live item; everything but its size is ciphertext.",
)

vector_blocks = Table(
    "vector_blocks",
    metadata,
    Column("index_id", BigInteger, nullable=False),
    Column(
        "block_id", BigInteger, nullable=False,
        comment="Write sequence of the first entry (or a fresh one for merged blocks).",
    ),
    Column("version", Integer, nullable=False, comment="Index version the block belongs to."),
    Column("list_tag", LargeBinary, nullable=False, comment="HMAC tag of the inverted list."),
    Column("n_vectors", Integer, nullable=False, comment="Entries in the block, stale included."),
    PrimaryKeyConstraint("index_id", "block_id"),
    Index(None, "index_id", "version", "list_tag"),
    comment="Vectors packed per inverted list; entries whose sequence no item holds are stale.",
)

# The ciphertext of a block, in pieces of at most a page (STORAGE PLAIN, set by
# the migration): stored inline, where one large value went through TOAST.
block_parts = Table(
    "block_parts",
    metadata,
    Column("index_id", BigInteger, nullable=False),
    Column("block_id", BigInteger, nullable=False),
    Column("part", Integer, nullable=False,
           comment="Position of the piece in its block's ciphertext."),
    Column("data", LargeBinary, nullable=False,
           comment="Up to 8,000 bytes of the block's AES-GCM ciphertext."),
    PrimaryKeyConstraint("index_id", "block_id", "part"),
    comment="The ciphertext of each vector block, in pieces small enough to stay in a page.",
)

index_centroids = Table(
    "index_centroids",
    metadata,
    Column("index_id", BigInteger, nullable=False),
    Column("version", Integer, nullable=False, comment="Index version these centroids define."),
    Column("n_lists", Integer, nullable=False, comment="Number of centroids."),
    Column("ciphertext", LargeBinary, nullable=False, comment="AES-GCM ciphertext of centroids."),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("index_id", "version"),
    comment="Trained IVF centroids per index version, encrypted.",
)

metadata_postings = Table(
    "metadata_postings",
    metadata,
    Column("index_id", BigInteger, nullable=False),
    Column("token", LargeBinary, nullable=False,
           comment="HMAC token of a metadata term (field path and value)."),
    Column("chunk_id", BigInteger, nullable=False,
           comment="Random id of the chunk within its term's list."),
    Column("n_seqs", Integer, nullable=False, comment="Sequences in the chunk, stale included."),
    Column("ciphertext", LargeBinary, nullable=False,
           comment="AES-GCM ciphertext of the chunk's ascending write sequences."),
    PrimaryKeyConstraint("index_id", "token", "chunk_id"),
    comment="Posting lists of the metadata index; sequences no item holds are stale.",
)

list_maps = Table(
    "list_maps",
    metadata,
    Column("index_id", BigInteger, nullable=False),
    Column("version", Integer, nullable=False, comment="Index version whose lists this maps."),
    Column("first_seq", BigInteger, nullable=False, comment="Lowest write sequence in the page."),
    Column("last_seq", BigInteger, nullable=False, comment="Highest write sequence in the page."),
    Column(
        "ciphertext", LargeBinary, nullable=False,
        comment="AES-GCM ciphertext of sorted (sequence, inverted list) pairs.",
    ),
    PrimaryKeyConstraint("index_id", "version", "first_seq"),
    comment="Which list a training run put each vector in, so a read finds the vector's block.",
)
