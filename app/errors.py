"""Domain errors: every failure a client can be told about, and nothing else.

CiphervecError
├── BadRequest (400)            the request contradicts itself or the API
│   ├── InvalidFilter           unknown operator or malformed metadata filter
│   └── KeySentToKmsIndex       an index_key sent to a KMS-backed index
├── InvalidInput (422)          well-formed but unacceptable data: dimension
│                               mismatch, non-finite vector, duplicate ids
├── Unauthenticated (401)       missing, unknown or revoked API key
├── WrongIndexKey (401)         index_key missing or does not open the index
├── Forbidden (403)             the caller may not do this
├── IndexNotFound (404)         no such index for this tenant
├── UserNotFound (404)          no such user of this index
├── IndexExists (409)           the name is taken in this tenant
├── TenantExists (409)          a new tenant's name is taken (it has keys or indexes)
├── Conflict (409)              a concurrent change won (e.g. two key rotations)
│   └── TransactionConflict     PostgreSQL aborted a transaction for a deadlock or a
│                               serialization failure (rerun before a client hears it)
├── PayloadTooLarge (413)       request body over the configured limit
├── ServiceUnavailable (503)    PostgreSQL cannot be reached
│   ├── EmbeddingModelUnavailable   the index's embedding model cannot be loaded
│   └── KmsUnavailable          the KMS cannot be reached (or is not configured here)
├── KmsRefused (502)            the KMS answered but refused (key disabled, access denied)
└── StoredDataCorrupt (500)     a stored ciphertext failed authentication

The API layer maps each class to its status code in one place
(app/api/errors.py); services and kernels raise them and never build HTTP
responses themselves.
"""

from __future__ import annotations


class CiphervecError(Exception):
    """Base of every error a client may see; `detail` is the client-facing text."""

    status_code = 500

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class BadRequest(CiphervecError):
    status_code = 400


class InvalidFilter(BadRequest):
    pass


class KeySentToKmsIndex(BadRequest):
    pass


class InvalidInput(CiphervecError):
    status_code = 422


class Unauthenticated(CiphervecError):
    status_code = 401


class WrongIndexKey(CiphervecError):
    status_code = 401


class Forbidden(CiphervecError):
    status_code = 403


class IndexNotFound(CiphervecError):
    status_code = 404

    def __init__(self, name: str) -> None:
        super().__init__(f"Index '{name}' not found")


class UserNotFound(CiphervecError):
    status_code = 404


class IndexExists(CiphervecError):
    status_code = 409

    def __init__(self, name: str) -> None:
        super().__init__(f"Index '{name}' already exists")


class TenantExists(CiphervecError):
    status_code = 409

    def __init__(self, name: str) -> None:
        super().__init__(f"Tenant '{name}' already exists")


class Conflict(CiphervecError):
    status_code = 409


class TransactionConflict(Conflict):
    pass


class PayloadTooLarge(CiphervecError):
    status_code = 413


class ServiceUnavailable(CiphervecError):
    status_code = 503


class EmbeddingModelUnavailable(ServiceUnavailable):
    pass


class KmsUnavailable(ServiceUnavailable):
    pass


class KmsRefused(CiphervecError):
    status_code = 502


class StoredDataCorrupt(CiphervecError):
    status_code = 500
