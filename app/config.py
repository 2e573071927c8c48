"""Service settings: one typed object built at start-up from CIPHERVEC_* variables."""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Everything the service reads from its environment."""

    model_config = SettingsConfigDict(env_prefix="CIPHERVEC_", env_file=".env", extra="ignore")

    database_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("CIPHERVEC_DATABASE_URL", "DATABASE_URL"),
        description="SQLAlchemy URL (postgresql+asyncpg://...). Unset: embedded local cluster.",
    )
    data_dir: Path = Field(
        default=Path(".ciphervec"),
        description="Where the embedded PostgreSQL cluster lives when database_url is unset.",
    )
    db_pool_size: int = Field(default=10, ge=1)
    db_connect_timeout_s: float = Field(default=5.0, gt=0)
    db_statement_timeout_ms: int = Field(default=60_000, ge=0)

    max_request_bytes: int = Field(
        default=64 * 1024 * 1024, ge=1024, description="Larger request bodies get 413."
    )
    max_batch_items: int = Field(default=100_000, ge=1, description="Items per upsert.")
    max_embedded_items: int = Field(
        default=4_096, ge=1, description="Texts one request may have the service embed."
    )
    max_top_k: int = Field(default=10_000, ge=1, description="Results per query vector.")
    max_query_rows: int = Field(
        default=10_000, ge=1, description="Query vectors (or texts) in one query request."
    )
    max_query_results: int = Field(
        default=100_000, ge=1, description="Query rows times top_k in one query request."
    )
    max_ids_per_request: int = Field(
        default=100_000, ge=1, description="Ids one get or delete request may name."
    )
    max_item_bytes: int = Field(
        default=1024 * 1024, ge=1,
        description="Bytes of contents (UTF-8) and metadata (compact JSON) of one item; "
        "a larger item gets 413.",
    )
    max_response_bytes: int = Field(
        default=64 * 1024 * 1024, ge=1024,
        description="Bytes of one response, and of the stored items decrypted to build it; "
        "a request whose answer would be larger gets 422.",
    )

    dek_cache_ttl_s: float = Field(
        default=30.0, ge=0, description="How long an unwrapped data key stays in memory."
    )
    api_key_cache_ttl_s: float = Field(
        default=5.0, ge=0, description="How long a verified API key is trusted without a lookup."
    )
    kms_config: Path | None = Field(
        default=None,
        description="YAML file whose kms.registry names the KMS keys indexes can use "
        "(see app/kms/registry.py). Unset: only client-supplied index keys.",
    )
    block_max_vectors: int = Field(
        default=1024, ge=16, description="Vectors per encrypted block before a new one starts."
    )
    block_cache_mb: int = Field(
        default=512, ge=0, description="In-process cache of block ciphertexts."
    )
    blas_threads: int = Field(
        default=1, ge=1,
        description="Threads numpy's BLAS may use in each service process. The matrix work of "
        "one request is small, and idle BLAS threads spin on cores PostgreSQL needs.",
    )
    auto_train: bool = Field(default=True, description="Train indexes as they grow.")
    auto_train_threshold: int = Field(
        default=10_000, ge=2, description="Items at which an untrained index is trained."
    )
    retrain_growth: float = Field(
        default=2.0, gt=1.0, description="Retrain when items reach this multiple of the last train."
    )
    auto_train_quiet_s: float = Field(
        default=2.0, ge=0,
        description="Auto-training waits until the index has taken no write (in this "
        "process) for this long, so a bulk load is trained once, at its end.",
    )
    auto_train_max_delay_s: float = Field(
        default=60.0, ge=0,
        description="Auto-training starts after this long even if writes keep coming.",
    )
    train_wait_s: float = Field(
        default=600.0, ge=0,
        description="How long a train request waits for a training or compaction already "
        "running on its index before answering 409.",
    )
    compaction_check_interval_s: float = Field(
        default=2.0, ge=0, description="Least time between compaction checks of an index."
    )
    compaction_stale_ratio: float = Field(
        default=0.25, gt=0, lt=1, description="Stale block entries that trigger compaction."
    )
    tail_write_max_items: int = Field(
        default=256, ge=0,
        description="Upserts of at most this many items into a trained index go to its "
        "write tail as one block (0: never), instead of one small block per list touched.",
    )
    tail_fold_entries: int = Field(
        default=512, ge=1,
        description="Tail entries (or `tail_fold_blocks` blocks) at which a background "
        "fold moves the tail into the inverted lists.",
    )
    tail_fold_blocks: int = Field(
        default=16, ge=1, description="Tail blocks at which the tail is folded (see above)."
    )
    tail_max_entries: int = Field(
        default=2048, ge=0,
        description="Hard bound of the tail, which every query scans: writes beyond it "
        "go to the lists directly until a fold empties it.",
    )
    tail_max_blocks: int = Field(
        default=64, ge=0, description="Hard bound of the tail's blocks (see above)."
    )

    metrics: bool = Field(
        default=True, description="Serve Prometheus metrics at GET /metrics (no API key)."
    )
    metrics_addr: str | None = Field(
        default=None,
        description="host:port where a listener of its own serves GET /metrics, which the "
        "API's address then no longer answers. Unset: /metrics is on the API's address.",
    )
    log_level: str = Field(
        default="INFO", pattern="(?i)^(DEBUG|INFO|WARNING|ERROR|CRITICAL)$",
        description="Least severity logged (JSON lines on stderr).",
    )

    @field_validator("metrics_addr")
    @classmethod
    def _metrics_addr_is_host_port(cls, value: str | None) -> str | None:
        if value is not None:
            host_port(value)
        return value

    def sqlalchemy_url(self) -> str:
        """The database URL, which must be set by the time the app starts."""
        if not self.database_url:
            raise RuntimeError("CIPHERVEC_DATABASE_URL (or DATABASE_URL) is not set")
        url = self.database_url
        for prefix in ("postgresql://", "postgres://"):
            if url.startswith(prefix):
                return "postgresql+asyncpg://" + url[len(prefix) :]
        return url


def host_port(address: str) -> tuple[str, int]:
    """("127.0.0.1", 9100) from "127.0.0.1:9100" ("[::1]:9100" for IPv6), or ValueError."""
    host, _, port = address.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{address!r} is not host:port (e.g. 127.0.0.1:9100)")
    return host, int(port)
