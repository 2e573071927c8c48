"""The limits of one request: how many ids, query rows and results it may ask for,
how large one item may be, and how large its answer may grow.

Each limit is a setting (app.config) and each refusal names the variable that
raises it. Counts are checked before any work; an answer's size is estimated
from the stored ciphertexts of its results before they are decrypted, so a
request that would exhaust memory is refused while it has cost little.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

from app.config import Settings
from app.errors import InvalidInput, PayloadTooLarge

# JSON around one result: its keys, quotes, distance and separators.
_RESULT_OVERHEAD = 64
# A float32 value as JSON: Python prints the float64 it widens to, usually 17-19
# significant digits ("-0.30000001192092896"), plus its comma.
_JSON_FLOAT_BYTES = 24


def check_id_count(settings: Settings, count: int) -> None:
    """Refuse a get or delete naming more ids than CIPHERVEC_MAX_IDS_PER_REQUEST."""
    limit = settings.max_ids_per_request
    if count > limit:
        raise InvalidInput(
            f"{count:,} ids in one request; at most {limit:,} "
            "(CIPHERVEC_MAX_IDS_PER_REQUEST): split the request"
        )


def check_query_shape(settings: Settings, rows: int, top_k: int) -> None:
    """Refuse a query over the row, top_k or rows x top_k limits."""
    if top_k > settings.max_top_k:
        raise InvalidInput(
            f"top_k {top_k:,} is over the limit of {settings.max_top_k:,} (CIPHERVEC_MAX_TOP_K)"
        )
    if rows > settings.max_query_rows:
        raise InvalidInput(
            f"{rows:,} query vectors in one request; at most {settings.max_query_rows:,} "
            "(CIPHERVEC_MAX_QUERY_ROWS): split the request"
        )
    if rows * top_k > settings.max_query_results:
        raise InvalidInput(
            f"{rows:,} query vectors x top_k {top_k:,} = {rows * top_k:,} results; at most "
            f"{settings.max_query_results:,} per request (CIPHERVEC_MAX_QUERY_RESULTS): "
            "lower top_k or split the request"
        )


def check_item_size(settings: Settings, position: int, size: int) -> None:
    """Refuse an item whose contents and metadata take more than CIPHERVEC_MAX_ITEM_BYTES."""
    limit = settings.max_item_bytes
    if size > limit:
        raise PayloadTooLarge(
            f"item {position} of the request has {size:,} bytes of contents and metadata; "
            f"at most {limit:,} (CIPHERVEC_MAX_ITEM_BYTES)"
        )


class AnswerBudget:
    """A running estimate of an answer's size, refused (422) once over
    CIPHERVEC_MAX_RESPONSE_BYTES, before the results it counts are built.

    A result weighs its JSON overhead, its vector when `include` has "vector"
    and, when it has "contents" or "metadata", its whole stored payload. The
    distinct items must be decrypted even when only their ids are returned, so
    their payloads count too, as a second total: the larger of the two is held
    against the limit.
    """

    def __init__(self, settings: Settings, include: Collection[str], dimension: int) -> None:
        self._settings = settings
        self._with_fields = not {"contents", "metadata"}.isdisjoint(include)
        vector_bytes = dimension * _JSON_FLOAT_BYTES if "vector" in include else 0
        self._per_result = _RESULT_OVERHEAD + vector_bytes
        self._answer = 0
        self._decrypted = 0

    def add(self, results: Iterable[int], distinct: Iterable[int]) -> None:
        """Count results by their stored payload sizes (an item found by several
        queries counts each time), and the payload sizes of items not counted before."""
        self._answer += sum(self._per_result + (size if self._with_fields else 0)
                            for size in results)
        self._decrypted += sum(distinct)
        estimate = max(self._answer, self._decrypted)
        if estimate > self._settings.max_response_bytes:
            raise answer_too_large(self._settings, estimate)


def answer_too_large(settings: Settings, size: int | None = None) -> InvalidInput:
    """The refusal of an answer over CIPHERVEC_MAX_RESPONSE_BYTES: estimated at
    `size` bytes, or found larger than the limit while it was built."""
    limit = settings.max_response_bytes
    amount = f"about {size:,}" if size is not None else f"more than {limit:,}"
    return InvalidInput(
        f"the answer would take {amount} bytes; at most {limit:,} "
        "(CIPHERVEC_MAX_RESPONSE_BYTES): ask for fewer results or ids, or leave out "
        "metadata, contents or vector"
    )
