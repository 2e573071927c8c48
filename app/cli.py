"""The `ciphervec` command: serve, migrate, manage API keys and rotate index keys."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

import typer
import uvicorn

from app import migrate as migrations
from app.config import Settings
from app.errors import CiphervecError
from app.localpg import LocalPostgres
from app.services import auth, indexes
from app.services.context import ServiceContext
from app.store.db import Database

cli = typer.Typer(help="ciphervec: an encrypted vector database over PostgreSQL.",
                  no_args_is_help=True)
keys_cli = typer.Typer(help="Create, list and revoke API keys; rotate index keys.",
                       no_args_is_help=True)
cli.add_typer(keys_cli, name="keys")

T = TypeVar("T")


def _embedded_cluster(settings: Settings) -> LocalPostgres:
    return LocalPostgres(settings.data_dir.resolve() / "pg")


def _database_url(settings: Settings) -> str:
    """The configured database, or the embedded cluster under the data dir (started if needed)."""
    if settings.database_url:
        return settings.sqlalchemy_url()
    cluster = _embedded_cluster(settings)
    cluster.start()
    typer.echo(f"Embedded PostgreSQL running at {cluster.libpq_url()}", err=True)
    return cluster.url()


def _with_db(settings: Settings, work: Callable[[Database], Awaitable[T]]) -> T:
    async def run() -> T:
        db = Database(_database_url(settings))
        try:
            return await work(db)
        finally:
            await db.dispose()

    return asyncio.run(run())


@cli.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes.")] = 1,
) -> None:
    """Migrate the database, make sure an API key exists, and serve the API.

    Without a database URL it starts the embedded cluster, and stops it on exit
    if this command was the one that started it.
    """
    settings = Settings()
    embedded = None if settings.database_url else _embedded_cluster(settings)
    started_here = embedded is not None and not embedded.is_running()
    url = _database_url(settings)
    os.environ["CIPHERVEC_DATABASE_URL"] = url
    migrations.upgrade(url)

    async def first_key(db: Database) -> str | None:
        if await auth.count_active_api_keys(db):
            return None
        return (await auth.create_api_key(db, name="default")).secret

    secret = _with_db(Settings(), first_key)
    if secret is not None:
        typer.echo("No API key existed; created one. It is shown only this once:")
        typer.echo(f"X-API-Key: {secret}")
    try:
        uvicorn.run("app.main:create_app", factory=True, host=host, port=port, workers=workers)
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
        str | None, typer.Option(help="Tenant the key acts for (default: the name).")
    ] = None,
) -> None:
    """Mint an API key; the key itself is printed alone on the last line."""
    new = _with_db(Settings(), lambda db: auth.create_api_key(db, name=name, tenant=tenant))
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


def _hex_key(value: str | None) -> bytes | None:
    if value is None:
        return None
    try:
        key = bytes.fromhex(value)
    except ValueError:
        key = b""
    if len(key) != 32:
        raise typer.BadParameter("an index key is 64 hex characters (32 bytes)")
    return key


@keys_cli.command("rotate-index")
def keys_rotate_index(
    index: Annotated[str, typer.Option(help="Name of the index.")],
    tenant: Annotated[str, typer.Option(help="Tenant owning the index.")],
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
    current, new = _hex_key(index_key), _hex_key(new_index_key)
    settings = Settings()
    settings = settings.model_copy(update={"database_url": _database_url(settings)})

    async def run() -> indexes.Rotation:
        ctx = ServiceContext.build(settings)
        try:
            return await indexes.rotate_key(ctx, tenant, index, current, new, new_kms)
        finally:
            await ctx.close()

    try:
        rotation = asyncio.run(run())
    except CiphervecError as exc:
        typer.echo(exc.detail, err=True)
        raise typer.Exit(code=1) from exc
    typer.echo(f"Rotated the key of index '{index}' (tenant {tenant}): "
               f"provider={rotation.provider}, key_version={rotation.key_version}")


def main() -> None:
    """Console-script entry point."""
    cli()
