"""The plaintext layout of an item: whatever is encoded decodes to the same item."""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from app.services.payload import ItemPayload, decode_payload, encode_payload

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


@given(st.text(min_size=1, max_size=200), vectors, st.none() | st.text(min_size=1),
       st.none() | json_objects)
def test_any_item_decodes_to_what_was_encoded(
    item_id: str, vector: np.ndarray, contents: str | None, metadata: dict[str, Any] | None
) -> None:
    item = ItemPayload(id=item_id, vector=vector, contents=contents, metadata=metadata)
    decoded = decode_payload(encode_payload(item))
    assert decoded.id == item_id
    assert decoded.contents == contents
    assert decoded.metadata == metadata
    assert decoded.vector.dtype == np.float32
    assert np.array_equal(decoded.vector, vector)
