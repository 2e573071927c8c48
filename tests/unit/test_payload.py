"""The plaintext layout of an item: whatever is encoded decodes to the same item."""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from app.engine.payload import (
    ItemPayload,
    VectorPlace,
    decode_payload,
    encode_fields,
    with_place,
)

json_scalars = st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text() | st.floats(
    allow_nan=False, allow_infinity=False
)
json_objects = st.dictionaries(
    st.text(min_size=1),
    st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=3)
                 | st.dictionaries(st.text(), inner, max_size=3), max_leaves=8),
    min_size=1, max_size=5,
)
vectors = hnp.arrays(np.float32, st.integers(1, 64),
                     elements=st.floats(width=32, allow_nan=False, allow_infinity=False))
places = st.builds(VectorPlace, st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1),
                   st.integers(-(2**63), 2**63 - 1))


@given(st.text(min_size=1, max_size=200), places, st.none() | st.text(min_size=1),
       st.none() | json_objects)
def test_any_item_decodes_to_what_was_encoded(
    item_id: str, place: VectorPlace, contents: str | None, metadata: dict[str, Any] | None
) -> None:
    decoded = decode_payload(with_place(
        encode_fields(item_id, contents, metadata), place.version, place.list_no, place.block_id
    ))
    assert decoded == ItemPayload(
        id=item_id, vector=None, contents=contents, metadata=metadata, place=place
    )


@given(st.text(min_size=1, max_size=200), vectors, st.none() | st.text(min_size=1))
def test_payloads_written_with_their_vector_still_decode(
    item_id: str, vector: np.ndarray, contents: str | None
) -> None:
    ident, text = item_id.encode(), (contents or "").encode()
    legacy = b"".join((
        struct.pack("<BH", 1, len(ident)), ident, struct.pack("<I", len(text)), text,
        struct.pack("<I", 0), vector.astype("<f4").tobytes(),
    ))
    decoded = decode_payload(legacy)
    assert (decoded.id, decoded.contents, decoded.metadata, decoded.place) == (
        item_id, contents, None, None
    )
    assert decoded.vector is not None
    assert decoded.vector.dtype == np.float32
    assert np.array_equal(decoded.vector, vector)
