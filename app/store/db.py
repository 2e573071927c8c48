"""The connection pool and the one way services open a transaction.

`Database.transaction()` yields a connection inside BEGIN ... COMMIT (and
`driver_connection` its asyncpg connection, for COPY and the hot statements); the
COMMIT happens before the block exits, so a service returns only after its
writes are durable. Losing PostgreSQL (refused connection, dropped socket,
pool timeout) surfaces as ServiceUnavailable (503), never as a hang or a 500.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from sqlalchemy import Table, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from app.errors import ServiceUnavailable

_UNAVAILABLE = (
    OSError,
    asyncio.TimeoutError,
    sa_exc.TimeoutError,
    sa_exc.InterfaceError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
)


def _is_unavailable(error: BaseException) -> bool:
    if isinstance(error, sa_exc.DBAPIError) and error.connection_invalidated:
        return True
    if isinstance(error, sa_exc.OperationalError):
        return True
    cause = error.__cause__ or error.__context__
    return isinstance(error, _UNAVAILABLE) or (
        cause is not None and isinstance(cause, _UNAVAILABLE)
    )


class Database:
    """An async engine plus the transaction helper every service uses."""

    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 10,
        connect_timeout_s: float = 5.0,
        statement_timeout_ms: int = 60_000,
    ) -> None:
        self.engine: AsyncEngine = create_async_engine(
            url,
            # Statement parameters (id tokens, ciphertext) stay out of exception
            # messages, hence out of logs.
            hide_parameters=True,
            pool_size=pool_size,
            max_overflow=pool_size,
            pool_timeout=connect_timeout_s,
            pool_recycle=3600,
            connect_args={
                "timeout": connect_timeout_s,
                "server_settings": {
                    "statement_timeout": str(statement_timeout_ms),
                    "application_name": "ciphervec",
                },
            },
        )
        # The same pool; set per engine, the isolation level costs no extra
        # step per connection (as a per-connection option: 14 us of 140 us
        # around a one-row statement, measured).
        self._autocommit_engine = self.engine.execution_options(isolation_level="AUTOCOMMIT")

    @asynccontextmanager
    async def transaction(self, *, snapshot: bool = False) -> AsyncIterator[AsyncConnection]:
        """A connection in a transaction that commits on success, rolls back on error.

        `snapshot=True` gives a read-only REPEATABLE READ transaction: every
        statement sees the same committed state, so a reader never mixes two
        index versions.
        """
        try:
            async with self.engine.connect() as conn:
                if snapshot:
                    # asyncpg opens the transaction with these in its single BEGIN.
                    await conn.execution_options(
                        isolation_level="REPEATABLE READ", postgresql_readonly=True
                    )
                async with conn.begin():
                    yield conn
        except Exception as error:
            if _is_unavailable(error):
                raise ServiceUnavailable("Database unavailable, try again shortly") from error
            raise

    @asynccontextmanager
    async def autocommit(self) -> AsyncIterator[AsyncConnection]:
        """A connection outside any transaction, each statement on its own snapshot:
        for session-level advisory locks and reads of one statement."""
        try:
            async with self._autocommit_engine.connect() as conn:
                yield conn
        except Exception as error:
            if _is_unavailable(error):
                raise ServiceUnavailable("Database unavailable, try again shortly") from error
            raise

    async def dispose(self) -> None:
        """Close every pooled connection."""
        await self.engine.dispose()


async def driver_connection(conn: AsyncConnection) -> asyncpg.Connection:
    """The asyncpg connection under `conn`, inside `conn`'s open transaction.

    For the few hot statements that skip SQLAlchemy's statement compilation and
    parameter processing, and for COPY.
    """
    raw = await conn.get_raw_connection()
    driver: asyncpg.Connection = raw.driver_connection
    if not driver.is_in_transaction():
        # SQLAlchemy sends BEGIN with the first statement it runs; a statement
        # sent before that would commit on its own, outside the caller's write.
        # Its asyncpg adapter can send BEGIN alone, where a SELECT 1 through
        # SQLAlchemy cost about 0.5 ms more (measured). The method is private,
        # so the statement stands in should a later SQLAlchemy drop it.
        start = getattr(raw.dbapi_connection, "_start_transaction", None)
        if start is not None:
            await start()
        else:
            await conn.execute(text("SELECT 1"))
    return driver


async def copy_rows(
    conn: AsyncConnection, table: Table, columns: Sequence[str], rows: Iterable[Sequence[Any]]
) -> None:
    """Append rows to `table` with COPY, inside the connection's open transaction.

    The rows travel as one binary stream instead of one parameter set per row.
    """
    driver = await driver_connection(conn)
    await driver.copy_records_to_table(table.name, records=rows, columns=list(columns))
