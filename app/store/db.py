"""The connection pool and the one way services open a transaction.

`Database.transaction()` yields a connection inside BEGIN ... COMMIT (and
`driver_connection` its asyncpg connection, for COPY and the hot statements); the
COMMIT happens before the block exits, so a service returns only after its
writes are durable. Losing PostgreSQL (refused connection, dropped socket,
pool timeout, a server shutting down, crashing or starting up), while a
connection is taken, used or given back, surfaces as ServiceUnavailable (503),
never as a hang or a 500; a transaction PostgreSQL aborts as a deadlock victim
or for a serialization failure surfaces as TransactionConflict, which a
service may rerun (app.engine.retry).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from sqlalchemy import Table, event, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry, PoolProxiedConnection

from app.errors import CiphervecError, ServiceUnavailable, TransactionConflict

UNAVAILABLE_DETAIL = "Database unavailable, try again shortly"
CONFLICT_DETAIL = "A concurrent transaction conflicted with this one; try again"

# PostgreSQL cannot be reached in time: a refused, reset or broken socket, the
# connect timeout, or no pooled connection free within the pool timeout.
_UNREACHABLE = (OSError, TimeoutError, sa_exc.TimeoutError)

# SQLSTATEs of a server that is going away, not there yet or full: class 08
# (connection exception), admin_shutdown 57P01 and crash_shutdown 57P02 (a
# fast or immediate stop ends the session), cannot_connect_now 57P03 ("the
# database system is starting up / shutting down"), too_many_connections 53300.
# Not query_canceled 57014: the server is up and cancelled one statement.
_CONNECTION_EXCEPTION_CLASS = "08"
_UNAVAILABLE_STATES = frozenset({"57P01", "57P02", "57P03", "53300"})
# serialization_failure 40001 and deadlock_detected 40P01: the transaction was
# rolled back and would succeed if run again.
_CONFLICT_STATES = frozenset({"40001", "40P01"})


def _chain(error: BaseException) -> Iterator[BaseException]:
    """`error` and every exception behind it: causes, contexts and SQLAlchemy's `.orig`.

    SQLAlchemy wraps the asyncpg adapter's error (`.orig`, which carries the
    SQLSTATE), itself raised from asyncpg's; an error while rolling back a dead
    connection has the original failure as its context.
    """
    seen: set[int] = set()
    pending = [error]
    while pending:
        link = pending.pop()
        if id(link) in seen:
            continue
        seen.add(id(link))
        yield link
        for behind in (link.__cause__, link.__context__, getattr(link, "orig", None)):
            if isinstance(behind, BaseException):
                pending.append(behind)


def _means_unavailable(error: BaseException) -> bool:
    if isinstance(error, _UNREACHABLE):
        return True
    if isinstance(error, sa_exc.DBAPIError) and error.connection_invalidated:
        return True
    sqlstate = getattr(error, "sqlstate", None)
    return isinstance(sqlstate, str) and (
        sqlstate.startswith(_CONNECTION_EXCEPTION_CLASS) or sqlstate in _UNAVAILABLE_STATES
    )


def is_unavailable(error: BaseException) -> bool:
    """Whether `error` comes from PostgreSQL being unreachable, stopping or starting.

    Domain errors are never reclassified: they already say what the client
    should hear.
    """
    if isinstance(error, CiphervecError):
        return False
    return any(_means_unavailable(link) for link in _chain(error))


def is_conflict(error: BaseException) -> bool:
    """Whether PostgreSQL aborted the transaction as a deadlock victim or for a
    serialization failure."""
    if isinstance(error, CiphervecError):
        return False
    return any(getattr(link, "sqlstate", None) in _CONFLICT_STATES for link in _chain(error))


# How long an error on a live-looking connection waits for asyncpg to see the
# socket close. A server that ends a session while it is idle sends its FATAL
# message first: asyncpg, not expecting it, reports the next statement as a
# protocol error ("another operation is in progress"), and marks the connection
# closed only once the event loop has read the end of the socket, right after.
_CLOSE_GRACE_S = 0.1
# asyncpg's own complaints about the connection's state, which a session that
# ended under it causes (and which, on an open connection, are bugs).
_DRIVER_FAULTS = (asyncpg.InterfaceError, asyncpg.exceptions.InternalClientError)


async def connection_lost(conn: AsyncConnection, error: BaseException) -> bool:
    """Whether `error`, raised while using `conn`, means PostgreSQL went away: by
    its kind (see `is_unavailable`), or because `conn` lost its server session
    (asyncpg says only "connection is closed" of a session that ended while idle)."""
    if isinstance(error, CiphervecError):
        return False
    if is_unavailable(error):
        return True
    sync = conn.sync_connection
    if sync is None or sync.closed:
        return False
    if sync.invalidated:
        return True
    driver = sync.connection.driver_connection
    if not isinstance(driver, asyncpg.Connection):
        return False
    if not driver.is_closed() and any(isinstance(link, _DRIVER_FAULTS) for link in _chain(error)):
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _CLOSE_GRACE_S
        while not driver.is_closed() and loop.time() < deadline:
            await asyncio.sleep(0.005)
    return bool(driver.is_closed())


def _refuse_closed(
    _dbapi_connection: object, record: ConnectionPoolEntry, _proxy: PoolProxiedConnection
) -> None:
    """Pool checkout hook: a connection whose session ended while it sat in the
    pool is replaced by a new one. asyncpg already knows it is closed, so this
    costs no round trip (as a pre-ping would)."""
    driver = record.driver_connection
    if isinstance(driver, asyncpg.Connection) and driver.is_closed():
        raise sa_exc.DisconnectionError("session ended while the connection was pooled")


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
        event.listen(self.engine.sync_engine, "checkout", _refuse_closed)

    @asynccontextmanager
    async def transaction(self, *, snapshot: bool = False) -> AsyncIterator[AsyncConnection]:
        """A connection in a transaction that commits on success, rolls back on error.

        `snapshot=True` gives a read-only REPEATABLE READ transaction: every
        statement sees the same committed state, so a reader never mixes two
        index versions.
        """
        async with self._connection(self.engine) as conn:
            if snapshot:
                # asyncpg opens the transaction with these in its single BEGIN.
                await conn.execution_options(
                    isolation_level="REPEATABLE READ", postgresql_readonly=True
                )
            async with conn.begin():
                yield conn

    @asynccontextmanager
    async def autocommit(self) -> AsyncIterator[AsyncConnection]:
        """A connection outside any transaction, each statement on its own snapshot:
        for session-level advisory locks and reads of one statement."""
        async with self._connection(self._autocommit_engine) as conn:
            yield conn

    @staticmethod
    @asynccontextmanager
    async def _connection(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
        """A pooled connection of `engine`; losing PostgreSQL while getting, using
        or returning it raises ServiceUnavailable, a deadlock or serialization
        failure TransactionConflict."""
        try:
            async with engine.connect() as conn:
                try:
                    yield conn
                except Exception as error:
                    if await connection_lost(conn, error):
                        raise ServiceUnavailable(UNAVAILABLE_DETAIL) from error
                    raise
        except Exception as error:
            if is_unavailable(error):
                raise ServiceUnavailable(UNAVAILABLE_DETAIL) from error
            if is_conflict(error):
                raise TransactionConflict(CONFLICT_DETAIL) from error
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
