"""The `ciphervec` command: serve, migrate, manage API keys, rotate index keys, import
and export items, and a quick benchmark. Commands parse their options here; the work
is in app.ops and the services."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Annotated, TypeVar

import typer
import uvicorn
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from app import migrate as migrations
from app.config import Settings
from app.errors import CiphervecError, TenantExists
from app.localpg import LocalPostgres, embedded_cluster_dir
from app.logs import configure_logging
from app.ops import bench as benchmark
from app.ops import pgvector_source, transfer
from app.services import auth, indexes
from app.services.context import ServiceContext
from app.store.db import Database
from app.version import CIPHERVEC_VERSION, CYBORGDB_API_LEVEL

cli = typer.Typer(help="ciphervec: an encrypted vector database over PostgreSQL.",
                  no_args_is_help=True)
keys_cli = typer.Typer(help="Create, list and revoke API keys; rotate index keys.",
                       no_args_is_help=True)
cli.add_typer(keys_cli, name="keys")


def _print_version(asked: bool) -> None:
    if asked:
        typer.echo(f"ciphervec {CIPHERVEC_VERSION} (CyborgDB API {CYBORGDB_API_LEVEL})")
        raise typer.Exit()


@cli.callback()
def _options(
    show_version: Annotated[bool, typer.Option(
        "--version", callback=_print_version, is_eager=True,
        help="Print ciphervec's version and the CyborgDB API level it speaks.",
    )] = False,
) -> None:
    """ciphervec: an encrypted vector database over PostgreSQL."""

T = TypeVar("T")


def _embedded_cluster(settings: Settings) -> LocalPostgres:
    return LocalPostgres(embedded_cluster_dir(settings.data_dir))


def _database_url(settings: Settings, embedded: LocalPostgres | None = None) -> str:
    """The configured database, or the embedded cluster of the data dir (started if needed)."""
    if settings.database_url:
        return settings.sqlalchemy_url()
    cluster = embedded or _embedded_cluster(settings)
    cluster.start()
    typer.echo(f"Embedded PostgreSQL running at {cluster.libpq_url()} "
               f"(data directory {cluster.data_dir})", err=True)
    return cluster.url()


class _Terminated(BaseException):
    """SIGTERM arrived while `serve` ran (a BaseException, like KeyboardInterrupt, so
    that no `except Exception` on the way swallows it)."""


@contextmanager
def _sigterm_unwinds() -> Iterator[None]:
    """Let SIGTERM unwind the block like Ctrl-C, so its `finally` clauses run, and then
    end the process by SIGTERM, as it would have ended without them.

    uvicorn handles SIGTERM while it serves, and after its graceful shutdown
    restores the previous handler and raises the signal again. With the default
    handler that killed the process there and then, before `serve` stopped the
    embedded cluster. (With several workers, uvicorn's supervisor keeps the
    signal and returns normally.)
    """

    def terminate(signum: int, frame: FrameType | None) -> None:
        raise _Terminated

    previous = signal.signal(signal.SIGTERM, terminate)
    terminated = False
    try:
        yield
    except _Terminated:
        terminated = True
    finally:
        signal.signal(signal.SIGTERM, previous)
    if terminated:
        signal.raise_signal(signal.SIGTERM)


def _with_db(settings: Settings, work: Callable[[Database], Awaitable[T]]) -> T:
    async def run() -> T:
        db = Database(_database_url(settings))
        try:
            return await work(db)
        finally:
            await db.dispose()

    return asyncio.run(run())


def _with_context(settings: Settings, work: Callable[[ServiceContext], Awaitable[T]]) -> T:
    """Run `work` against the services in this process, as the server would; a domain
    error or bad input ends the command with its message and exit code 1."""

    async def run() -> T:
        ctx = ServiceContext.build(settings.model_copy(update={"database_url": url}))
        try:
            return await work(ctx)
        finally:
            await ctx.close()

    url = _database_url(settings)
    try:
        return asyncio.run(run())
    except CiphervecError as exc:
        typer.echo(f"Error: {exc.detail}", err=True)
        raise typer.Exit(code=1) from None
    except (transfer.TransferFailed, pgvector_source.SourceUnusable) as exc:
        typer.echo(f"Error: {exc}", err=True)
        raise typer.Exit(code=1) from None


@cli.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes.")] = 1,
) -> None:
    """Migrate the database, make sure an API key exists, and serve the API.

    Without a database URL it starts the embedded cluster, and stops it on exit
    (Ctrl-C or SIGTERM) if this command was the one that started it.
    """
    settings = Settings()
    if workers > 1 and settings.metrics and settings.metrics_addr:
        raise typer.BadParameter(
            f"CIPHERVEC_METRICS_ADDR ({settings.metrics_addr}) is one address, and each of "
            f"{workers} worker processes would listen on it: serve one worker per process "
            "(e.g. one per container), or unset it to serve /metrics on the API's address",
            param_hint="--workers",
        )
    embedded = None if settings.database_url else _embedded_cluster(settings)
    started_here = embedded is not None and not embedded.is_running()

    async def first_key(db: Database) -> str | None:
        if await auth.count_active_api_keys(db):
            return None
        return (await auth.create_api_key(db, name="default", tenant="default")).secret

    with _sigterm_unwinds():
        try:
            url = _database_url(settings, embedded)
            os.environ["CIPHERVEC_DATABASE_URL"] = url
            migrations.upgrade(url)
            secret = _with_db(Settings(), first_key)
            if secret is not None:
                typer.echo("No API key existed; created one. It is shown only this once:")
                typer.echo(f"X-API-Key: {secret}")
            configure_logging(Settings().log_level)
            # An import string (not an app object), so that each of several workers
            # builds its own app; logging is configured by create_app in each worker.
            uvicorn.run(
                "app.main:create_app", factory=True, host=host, port=port, workers=workers,
                log_config=None, access_log=False,
            )
        finally:
            if embedded is not None and started_here:
                embedded.stop()


@cli.command()
def migrate(
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "head",
) -> None:
    """Apply the database migrations up to REVISION."""
    migrations.upgrade(_database_url(Settings()), revision)


@keys_cli.command("create")
def keys_create(
    name: Annotated[str, typer.Option(help="Label of the key.")],
    tenant: Annotated[
        str | None,
        typer.Option(help="Tenant the key acts for. Default: a new tenant named after the key; "
                          "an existing tenant is joined only when named here."),
    ] = None,
) -> None:
    """Mint an API key; the key itself is printed alone on the last line."""
    try:
        new = _with_db(Settings(), lambda db: auth.create_api_key(db, name=name, tenant=tenant))
    except TenantExists:
        typer.echo(f"Error: a tenant named '{name}' already exists (it has API keys or "
                   f"indexes). To add this key to it, pass --tenant {name}; for a new "
                   "tenant, choose another --name.", err=True)
        raise typer.Exit(code=1) from None
    typer.echo(f"Created key '{new.row.name}' (prefix {new.row.prefix}, tenant {new.row.tenant})")
    typer.echo(new.secret)


@keys_cli.command("list")
def keys_list() -> None:
    """List API keys (prefix, name, tenant, state); never the keys themselves."""
    for row in _with_db(Settings(), auth.list_api_keys):
        state = f"revoked {row.revoked_at:%Y-%m-%d %H:%M}" if row.revoked_at else "active"
        typer.echo(f"{row.prefix}\t{row.name}\t{row.tenant}\t{row.created_at:%Y-%m-%d}\t{state}")


@keys_cli.command("revoke")
def keys_revoke(
    prefix: Annotated[str, typer.Argument(help="The key's prefix (or the whole key).")],
) -> None:
    """Revoke an API key; it stops working within the key cache TTL."""
    if not _with_db(Settings(), lambda db: auth.revoke_api_key(db, prefix)):
        typer.echo(f"No active key with prefix {prefix}", err=True)
        raise typer.Exit(code=1)
    typer.echo(f"Revoked {prefix}")


TenantOption = Annotated[
    str, typer.Option(help="Tenant owning the index (an API key's tenant; its name by default).")
]
IndexOption = Annotated[str, typer.Option("--index", help="Name of the index.")]
IndexKeyOption = Annotated[
    str | None,
    typer.Option(
        "--index-key", envvar="CIPHERVEC_INDEX_KEY", show_envvar=True,
        help="The index key, 64 hex characters (prefer the variable or --index-key-file: "
             "command lines are visible to other users).",
    ),
]
IndexKeyFileOption = Annotated[
    Path | None,
    typer.Option(
        "--index-key-file", exists=True, dir_okay=False, readable=True,
        help="File holding the index key (64 hex characters, or the 32 bytes themselves).",
    ),
]


def _index_key(hex_key: str | None, key_file: Path | None) -> bytes:
    """The 32-byte index key from exactly one of --index-key and --index-key-file."""
    if (hex_key is None) == (key_file is None):
        raise typer.BadParameter("give exactly one of --index-key and --index-key-file")
    if key_file is not None:
        raw = key_file.read_bytes()
        if len(raw) == 32:
            return raw
        return _hex_index_key(raw.decode("ascii", errors="replace").strip())
    return _hex_index_key(hex_key or "")


def _hex_index_key(text: str) -> bytes:
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) != 32:
        raise typer.BadParameter("the index key must be 32 bytes written as 64 hex characters")
    return key


def _progress_bar() -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeRemainingColumn(), console=Console(stderr=True),
    )


@cli.command("import")
def import_items(
    file: Annotated[
        Path | None,
        typer.Argument(exists=True, dir_okay=False, readable=True,
                       help="A .npy array (one vector per row) or a .jsonl file; leave out "
                            "with --pgvector-url."),
    ] = None,
    *,
    index: IndexOption,
    index_key: IndexKeyOption = None,
    index_key_file: IndexKeyFileOption = None,
    tenant: TenantOption = "default",
    batch_size: Annotated[int, typer.Option(min=1, help="Items per upsert.")] = 1000,
    ids: Annotated[
        Path | None,
        typer.Option(exists=True, dir_okay=False, readable=True,
                     help="For .npy: a text file with one id per row (default: row numbers)."),
    ] = None,
    limit: Annotated[
        int | None,
        typer.Option(min=1, help="Stop after this many records (rows); re-run to go on."),
    ] = None,
    progress_file: Annotated[
        Path | None,
        typer.Option(help="Where progress is kept (default: FILE.progress, or "
                          "pgvector-TENANT-INDEX.progress in the current directory)."),
    ] = None,
    restart: Annotated[
        bool, typer.Option("--restart", help="Ignore recorded progress and start over.")
    ] = False,
    pgvector_url: Annotated[
        str | None,
        typer.Option(
            "--pgvector-url", envvar="CIPHERVEC_PGVECTOR_URL", show_envvar=True,
            rich_help_panel="pgvector source",
            help="Read from this PostgreSQL database (postgresql://user@host:port/db); "
                 "keep the password in PGPASSWORD or ~/.pgpass, not on the command line.",
        ),
    ] = None,
    table: Annotated[
        str | None,
        typer.Option(rich_help_panel="pgvector source",
                     help="The table (or view) to read, schema-qualified if need be."),
    ] = None,
    query: Annotated[
        str | None,
        typer.Option(rich_help_panel="pgvector source",
                     help="A SELECT to read instead of a table; it is run once per batch "
                          "with a condition on the id column added."),
    ] = None,
    id_column: Annotated[
        str, typer.Option(rich_help_panel="pgvector source",
                          help="Unique id column, of any type (ids are its text form).")
    ] = "id",
    vector_column: Annotated[
        str, typer.Option(rich_help_panel="pgvector source",
                          help="vector, halfvec, real[] or double precision[] column.")
    ] = "embedding",
    contents_column: Annotated[
        str | None, typer.Option(rich_help_panel="pgvector source",
                                 help="Column of the items' contents (read as text).")
    ] = None,
    metadata_column: Annotated[
        str | None, typer.Option(rich_help_panel="pgvector source",
                                 help="json or jsonb column of the items' metadata.")
    ] = None,
) -> None:
    """Upsert the items of FILE, or of a pgvector table or query, into an existing index,
    resuming an interrupted import."""
    key = _index_key(index_key, index_key_file)
    settings = Settings()
    if batch_size > settings.max_batch_items:
        raise typer.BadParameter(f"at most {settings.max_batch_items}", param_hint="--batch-size")
    if pgvector_url is not None:
        if file is not None or ids is not None:
            raise typer.BadParameter("FILE and --ids do not go with --pgvector-url")
        spec = pgvector_source.SourceSpec(
            pgvector_url, table, query, id_column, vector_column, contents_column,
            metadata_column,
        )
        _import_pgvector(settings, spec, tenant, index, key, batch_size=batch_size,
                         limit=limit, progress=transfer.ProgressFile(
                             progress_file or Path(f"pgvector-{tenant}-{index}.progress")),
                         restart=restart)
        return
    if file is None:
        raise typer.BadParameter("give FILE or --pgvector-url")
    progress = transfer.ProgressFile(progress_file) if progress_file else (
        transfer.ProgressFile.beside(file)
    )
    if restart:
        progress.clear()

    async def work(ctx: ServiceContext) -> transfer.ImportOutcome:
        source = transfer.open_source(file, ids)
        with _progress_bar() as bar:
            task = bar.add_task(f"import {file.name}", total=source.total)
            bar.update(task, completed=progress.load(tenant, index))
            outcome = await transfer.import_items(
                ctx, tenant, index, key, source, progress, batch_size=batch_size, limit=limit,
                on_batch=lambda done: bar.update(task, completed=done),
            )
        await _finish_training(ctx, outcome.training_started)
        return outcome

    outcome = _interruptible_import(settings, work, progress)
    if outcome.started_at:
        typer.echo(f"Resumed after record {outcome.started_at}.", err=True)
    typer.echo(f"Imported {outcome.items} items (records {outcome.started_at}-"
               f"{outcome.stopped_at} of {outcome.total}) into '{index}'.", err=True)
    if not outcome.complete:
        typer.echo(f"Stopped early; run the same command again to continue ({progress.path}).",
                   err=True)


async def _finish_training(ctx: ServiceContext, started: bool) -> None:
    if started or ctx.background:
        typer.echo("Waiting for the training this import started...", err=True)
        await transfer.finish_background_work(ctx)


def _interruptible_import(
    settings: Settings, work: Callable[[ServiceContext], Awaitable[T]],
    progress: transfer.ProgressFile,
) -> T:
    try:
        return _with_context(settings, work)
    except KeyboardInterrupt:
        typer.echo(f"Interrupted; run the same command again to resume ({progress.path}).",
                   err=True)
        raise typer.Exit(code=130) from None


def _import_pgvector(
    settings: Settings, spec: pgvector_source.SourceSpec, tenant: str, index: str, key: bytes,
    *, batch_size: int, limit: int | None, progress: transfer.ProgressFile, restart: bool,
) -> None:
    """`import --pgvector-url`: read the source in id order, print the counts at the end."""
    if restart:
        progress.clear()

    async def work(ctx: ServiceContext) -> transfer.PgvectorOutcome:
        source = await pgvector_source.PgvectorSource.open(spec)
        try:
            with _progress_bar() as bar:
                task = bar.add_task(f"import {spec.table or 'query'}", total=None)
                outcome = await transfer.import_pgvector(
                    ctx, tenant, index, key, source, progress, batch_size=batch_size,
                    limit=limit,
                    on_batch=lambda read, total: bar.update(task, completed=read, total=total),
                )
        finally:
            await source.close()
        await _finish_training(ctx, outcome.training_started)
        return outcome

    outcome = _interruptible_import(settings, work, progress)
    so_far = outcome.so_far
    if outcome.resumed:
        typer.echo("Resumed from the progress file; counts include the earlier runs.", err=True)
    typer.echo(f"Read {so_far.read} of {outcome.source_rows - outcome.null_ids} rows, imported "
               f"{so_far.imported} items into '{index}', skipped {so_far.skipped}.", err=True)
    for item_id, reason in outcome.skipped_examples:
        typer.echo(f"  skipped {item_id!r}: {reason}", err=True)
    if outcome.null_ids:
        typer.echo(f"{outcome.null_ids} rows with a NULL id were not read.", err=True)
    if not outcome.complete:
        typer.echo(f"Stopped early; run the same command again to continue ({progress.path}).",
                   err=True)


@cli.command("export")
def export_items(
    index: IndexOption,
    index_key: IndexKeyOption = None,
    index_key_file: IndexKeyFileOption = None,
    tenant: TenantOption = "default",
    out: Annotated[
        Path | None, typer.Option("--out", dir_okay=False, help="Write here instead of stdout.")
    ] = None,
) -> None:
    """Write every item of an index, decrypted, as JSONL (id, vector, contents, metadata)."""
    key = _index_key(index_key, index_key_file)

    async def work(ctx: ServiceContext) -> int:
        if out is None:
            return await transfer.export_items(ctx, tenant, index, key, sys.stdout)
        with out.open("w", encoding="utf-8") as sink:
            return await transfer.export_items(ctx, tenant, index, key, sink)

    count = _with_context(Settings(), work)
    typer.echo(f"Exported {count} items from '{index}'.", err=True)


@cli.command("bench")
def bench(
    vectors: Annotated[int, typer.Option(min=100, help="Vectors to upsert.")] = 20_000,
    dimension: Annotated[int, typer.Option(min=2, max=4096, help="Their dimension.")] = 128,
    queries: Annotated[int, typer.Option(min=1, help="Single queries after training.")] = 200,
    batch_size: Annotated[int, typer.Option(min=1, help="Vectors per upsert.")] = 1000,
    top_k: Annotated[int, typer.Option(min=1, max=1000)] = 10,
) -> None:
    """Time upserts, one training run and single queries on a throwaway index of the
    configured (or embedded) database, through the service layer (no HTTP)."""
    # Training is timed on its own: no auto-training in the middle of the upserts.
    settings = Settings().model_copy(update={"auto_train": False})

    async def work(ctx: ServiceContext) -> benchmark.BenchResult:
        return await benchmark.run_bench(
            ctx, n=vectors, dimension=dimension, queries=queries, batch_size=batch_size,
            top_k=top_k,
        )

    result = _with_context(settings, work)
    typer.echo(f"{result.vectors} x {result.dimension} vectors, service layer, no HTTP")
    typer.echo(f"upsert: {result.upsert_vectors_per_s:,.0f} vectors/s")
    typer.echo(f"train:  {result.train_s:.2f} s ({result.n_lists} lists)")
    typer.echo(f"query:  p50 {result.query_p50_ms:.2f} ms, p95 {result.query_p95_ms:.2f} ms "
               f"(top_k={top_k})")


@keys_cli.command("rotate-index")
def keys_rotate_index(
    index: IndexOption,
    tenant: TenantOption = "default",
    index_key: Annotated[
        str | None, typer.Option(help="Current index_key (hex), for indexes opened by one.")
    ] = None,
    new_index_key: Annotated[
        str | None, typer.Option(help="New index_key (hex) to wrap the data key under.")
    ] = None,
    new_kms: Annotated[
        str | None, typer.Option(help="KMS registry entry to wrap the data key under.")
    ] = None,
) -> None:
    """Re-wrap an index's data key under a new index_key or KMS key (items untouched)."""
    current = None if index_key is None else _hex_index_key(index_key)
    new = None if new_index_key is None else _hex_index_key(new_index_key)

    async def work(ctx: ServiceContext) -> indexes.Rotation:
        return await indexes.rotate_key(ctx, tenant, index, current, new, new_kms)

    rotation = _with_context(Settings(), work)
    typer.echo(f"Rotated the key of index '{index}' (tenant {tenant}): "
               f"provider={rotation.provider}, key_version={rotation.key_version}")


def main() -> None:
    """Console-script entry point."""
    cli()
