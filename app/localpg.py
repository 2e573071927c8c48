"""A local PostgreSQL cluster run from the machine's server binaries.

Used for the embedded database of `ciphervec serve` when no DATABASE_URL is
set, and by the test session for a throwaway cluster. It listens on
127.0.0.1 only, with trust authentication, which is safe only because
nothing but this machine can connect. PostgreSQL refuses to run as root, so
under root every server binary runs as the unprivileged `postgres` user.
"""

from __future__ import annotations

import glob
import os
import pwd
import re
import shutil
import socket
import subprocess
from pathlib import Path
from types import TracebackType

SUPERUSER = "ciphervec"
_SERVER_USER = "postgres"


def find_bin_dir() -> Path:
    """The newest PostgreSQL server binary directory on this machine."""
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2])
    )
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run(  # noqa: S603 - fixed binary, no shell
            [pg_config, "--bindir"], capture_output=True, text=True, check=False
        ).stdout.strip()
        candidates.append(out)
    for path in reversed(candidates):
        if path and (Path(path) / "initdb").is_file():
            return Path(path)
    raise RuntimeError(
        "No PostgreSQL server binaries found (initdb): install the postgresql package "
        "or set CIPHERVEC_DATABASE_URL"
    )


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class LocalPostgres:
    """One cluster in `data_dir`: initialised on first start, reused afterwards."""

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int | None = None,
        database: str = "ciphervec",
        fast: bool = False,
    ) -> None:
        self.data_dir = data_dir.resolve()
        self.database = database
        self.fast = fast
        self.bin_dir = find_bin_dir()
        self._as_root = os.geteuid() == 0
        self.port = port or self._recorded_port() or _free_port()

    def __enter__(self) -> LocalPostgres:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def run_as_owner_args(self, args: list[str]) -> list[str]:
        """`args` wrapped to run as the cluster's owner (the postgres user under root)."""
        if not self._as_root:
            return args
        if shutil.which("runuser"):
            return ["runuser", "-u", _SERVER_USER, "--", *args]
        return ["su", _SERVER_USER, "-s", "/bin/sh", "-c", " ".join(map(_quote, args))]

    def _run(self, args: list[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(  # noqa: S603 - argument list of PostgreSQL binaries, no shell
            self.run_as_owner_args(args), capture_output=True, text=True, check=False
        )

    def _recorded_port(self) -> int | None:
        conf = self.data_dir / "postgresql.auto.conf"
        if not conf.is_file():
            return None
        for line in conf.read_text().splitlines():
            if line.startswith("port"):
                return int(line.split("=")[1].strip().strip("'"))
        return None

    def _prepare_dir(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self._as_root:
            try:
                owner = pwd.getpwnam(_SERVER_USER)
            except KeyError as exc:
                raise RuntimeError(
                    "Running as root, but there is no 'postgres' user to run PostgreSQL as"
                ) from exc
            for parent in self.data_dir.parents:
                if not os.stat(parent).st_mode & 0o001:
                    raise RuntimeError(
                        f"{parent} is not traversable by the postgres user; "
                        "PostgreSQL cannot use a data directory below it"
                    )
            os.chown(self.data_dir, owner.pw_uid, owner.pw_gid)
        self.data_dir.chmod(0o700)

    def _initdb(self) -> None:
        self._prepare_dir()
        result = self._run([
            str(self.bin_dir / "initdb"), "-D", str(self.data_dir), "-U", SUPERUSER,
            "--auth=trust", "--encoding=UTF8", "--no-instructions",
        ])
        if result.returncode != 0:
            raise RuntimeError(f"initdb failed: {result.stderr.strip()}")
        settings = {
            "port": str(self.port),
            "listen_addresses": "'127.0.0.1'",
            "unix_socket_directories": "''",
            "max_connections": "200",
        }
        if self.fast:
            settings |= {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}
        with (self.data_dir / "postgresql.auto.conf").open("a") as conf:
            conf.writelines(f"{k} = {v}\n" for k, v in settings.items())

    def is_running(self) -> bool:
        """Whether a server is up on this data directory."""
        if not (self.data_dir / "PG_VERSION").exists():
            return False
        status = self._run([str(self.bin_dir / "pg_ctl"), "status", "-D", str(self.data_dir)])
        return status.returncode == 0

    def start(self) -> None:
        """Initialise if needed, start if not running, and create the default database."""
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb()
        if not self.is_running():
            log = self.data_dir / "server.log"
            result = self._run([
                str(self.bin_dir / "pg_ctl"), "start", "-w", "-t", "60",
                "-D", str(self.data_dir), "-l", str(log),
            ])
            if result.returncode != 0:
                tail = log.read_text()[-2000:] if log.exists() else result.stderr
                raise RuntimeError(f"PostgreSQL did not start:\n{tail}")
        self.create_database(self.database)

    def stop(self) -> None:
        """Stop the server (fast shutdown); nothing happens if it is not running."""
        if self.is_running():
            self._run([str(self.bin_dir / "pg_ctl"), "stop", "-m", "fast", "-w",
                       "-D", str(self.data_dir)])

    def destroy(self) -> None:
        """Stop the server and delete the data directory."""
        self.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)

    def create_database(self, name: str) -> str:
        """Create database `name` unless it exists; returns its SQLAlchemy URL."""
        if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", name):
            raise ValueError(f"Unsupported database name: {name!r}")
        query = f"SELECT 1 FROM pg_database WHERE datname = '{name}'"  # noqa: S608 - checked name
        exists = self._psql("postgres", query)
        if exists.strip() != "1":
            self._psql("postgres", f'CREATE DATABASE "{name}"')
        return self.url(name)

    def _psql(self, database: str, sql: str) -> str:
        result = self._run([
            str(self.bin_dir / "psql"), "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1",
            "-d", self.libpq_url(database), "-c", sql,
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


def _quote(arg: str) -> str:
    return "'" + arg.replace("'", "'\\''") + "'"
