"""The two versions a build reports: the CyborgDB API level it speaks and its own.

`GET /v1/health` answers `version` with the API level, because CyborgDB's
own tools read that field to decide whether they can talk to a server
(cyborgdb-migrate 0.18 refuses any server whose major.minor is not 0.18).
The level names the CyborgDB release whose REST API ciphervec implements
(../shared/REFERENCE-API.md); it changes when ciphervec takes up a new
CyborgDB release's routes and fields, never with ciphervec's own releases,
which are reported as `ciphervec_version` and by `ciphervec --version`.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

CYBORGDB_API_LEVEL = "0.18.0"

try:
    CIPHERVEC_VERSION = version("ciphervec")
except PackageNotFoundError:
    CIPHERVEC_VERSION = "0.0.0"
