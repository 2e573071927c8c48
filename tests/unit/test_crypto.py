"""AEAD, envelope keys and per-index tokens."""

from __future__ import annotations

import hmac
import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.crypto.aead import NONCE_BYTES, Aead, AuthenticationFailed, plaintext_length
from app.crypto.envelope import (
    KeyUnwrapFailed,
    generate_data_key,
    unwrap_data_key,
    wrap_data_key,
)
from app.crypto.index_cipher import IndexCipher
from app.crypto.prf import HmacSha256

KEY = bytes(range(32))


@given(st.binary(max_size=100), st.binary(max_size=300))
def test_prepared_hmac_equals_the_standard_library(key: bytes, message: bytes) -> None:
    assert HmacSha256(key).digest(message) == hmac.digest(key, message, "sha256")


def test_prepared_hmac_matches_rfc_4231_test_case_2() -> None:
    mac = HmacSha256(b"Jefe").digest(b"what do ya want for nothing?")
    assert mac.hex() == "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"


@given(st.binary(max_size=4096), st.binary(max_size=64))
def test_sealed_blob_opens_into_a_buffer_of_its_plaintext_length(
    plaintext: bytes, aad: bytes
) -> None:
    aead = Aead(KEY)
    blob = aead.seal(plaintext, aad)
    out = bytearray(plaintext_length(blob))
    aead.open_into(blob, aad, memoryview(out))
    assert out == plaintext


@given(st.binary(max_size=4096), st.binary(max_size=64))
def test_sealed_blob_opens_to_the_plaintext(plaintext: bytes, aad: bytes) -> None:
    aead = Aead(KEY)
    assert aead.open(aead.seal(plaintext, aad), aad) == plaintext


@given(st.binary(min_size=1, max_size=256), st.data())
def test_any_flipped_byte_is_detected(plaintext: bytes, data: st.DataObject) -> None:
    aead = Aead(KEY)
    blob = bytearray(aead.seal(plaintext, b"aad"))
    position = data.draw(st.integers(0, len(blob) - 1))
    blob[position] ^= data.draw(st.integers(1, 255))
    with pytest.raises(AuthenticationFailed):
        aead.open(bytes(blob), b"aad")


def test_other_associated_data_is_refused() -> None:
    aead = Aead(KEY)
    with pytest.raises(AuthenticationFailed):
        aead.open(aead.seal(b"secret", b"row 1"), b"row 2")


def test_wrong_key_is_refused() -> None:
    blob = Aead(KEY).seal(b"secret", b"")
    with pytest.raises(AuthenticationFailed):
        Aead(os.urandom(32)).open(blob, b"")


def test_same_plaintext_seals_differently_each_time() -> None:
    aead = Aead(KEY)
    assert aead.seal(b"secret", b"") != aead.seal(b"secret", b"")


@given(st.lists(st.tuples(st.binary(max_size=256), st.binary(max_size=64)), max_size=20))
def test_sealed_together_each_blob_opens_with_its_own_associated_data(
    messages: list[tuple[bytes, bytes]]
) -> None:
    aead = Aead(KEY)
    blobs = aead.seal_many([m for m, _ in messages], [a for _, a in messages])
    assert [aead.open(b, a) for b, (_, a) in zip(blobs, messages, strict=True)] == [
        m for m, _ in messages
    ]


def test_sealed_together_every_blob_has_its_own_nonce() -> None:
    blobs = Aead(KEY).seal_many([b"secret"] * 1000, [b""] * 1000)
    assert len({blob[:NONCE_BYTES] for blob in blobs}) == 1000


def test_wrapped_data_key_unwraps_with_its_key_and_index() -> None:
    dek = generate_data_key()
    assert unwrap_data_key(KEY, wrap_data_key(KEY, dek, 7), 7) == dek


def test_wrapped_data_key_refuses_a_wrong_key() -> None:
    wrapped = wrap_data_key(KEY, generate_data_key(), 7)
    with pytest.raises(KeyUnwrapFailed):
        unwrap_data_key(os.urandom(32), wrapped, 7)


def test_wrapped_data_key_refuses_another_index() -> None:
    wrapped = wrap_data_key(KEY, generate_data_key(), 7)
    with pytest.raises(KeyUnwrapFailed):
        unwrap_data_key(KEY, wrapped, 8)


def test_wrapped_data_key_does_not_contain_the_key() -> None:
    dek = generate_data_key()
    assert dek not in wrap_data_key(KEY, dek, 1)


def test_id_tokens_are_deterministic_per_index_and_distinct_across_indexes() -> None:
    dek = generate_data_key()
    assert IndexCipher(dek, 1).id_token("doc-1") == IndexCipher(dek, 1).id_token("doc-1")
    assert IndexCipher(dek, 1).id_token("doc-1") != IndexCipher(dek, 1).id_token("doc-2")
    assert IndexCipher(dek, 1).id_token("doc-1") != IndexCipher(generate_data_key(), 1).id_token(
        "doc-1"
    )


@given(st.lists(st.tuples(st.integers(0, 5), st.integers(0, 300)), max_size=40))
def test_remembered_list_tags_are_the_tags_a_fresh_cipher_computes(
    places: list[tuple[int, int]],
) -> None:
    dek = generate_data_key()
    cipher = IndexCipher(dek, 4)
    first = [cipher.list_tag(v, n) for v, n in places]
    again = [cipher.list_tag(v, n) for v, n in places]
    fresh = [IndexCipher(dek, 4).list_tag(v, n) for v, n in places]
    assert first == again == fresh
    assert len(set(first)) == len(set(places))


def test_item_ciphertext_is_bound_to_its_row_and_sequence() -> None:
    cipher = IndexCipher(generate_data_key(), 3)
    token = cipher.id_token("a")
    [blob] = cipher.seal_items([token], [10], [b"payload"])
    assert cipher.open_item(token, 10, blob) == b"payload"
    with pytest.raises(AuthenticationFailed):
        cipher.open_item(token, 11, blob)
    with pytest.raises(AuthenticationFailed):
        cipher.open_item(cipher.id_token("b"), 10, blob)


def test_item_ciphertext_does_not_open_in_another_index_with_the_same_key() -> None:
    dek = generate_data_key()
    token = IndexCipher(dek, 1).id_token("a")
    [blob] = IndexCipher(dek, 1).seal_items([token], [1], [b"payload"])
    with pytest.raises(AuthenticationFailed):
        IndexCipher(dek, 2).open_item(token, 1, blob)


def test_block_ciphertext_is_bound_to_version_list_and_block() -> None:
    cipher = IndexCipher(generate_data_key(), 3)
    tag = cipher.list_tag(1, 0)
    blob = cipher.seal_block(1, tag, 5, b"vectors")
    out = bytearray(len(b"vectors"))
    cipher.open_block_into(1, tag, 5, blob, memoryview(out))
    assert out == b"vectors"
    for version, list_tag, block_id in ((2, tag, 5), (1, cipher.list_tag(1, 1), 5), (1, tag, 6)):
        with pytest.raises(AuthenticationFailed):
            cipher.open_block_into(version, list_tag, block_id, blob, memoryview(out))


def test_sub_keys_are_independent_of_each_other() -> None:
    cipher = IndexCipher(generate_data_key(), 3)
    tag = cipher.list_tag(0, 0)
    blob = cipher.seal_block(0, tag, 1, b"x")
    with pytest.raises(AuthenticationFailed):
        cipher.open_centroids(0, blob)


def test_cipher_repr_hides_secrets() -> None:
    dek = generate_data_key()
    text = repr(IndexCipher(dek, 3)) + repr(Aead(dek))
    assert dek.hex() not in text
    assert "secret" in text


keys = st.binary(min_size=32, max_size=32)


@given(keys, keys, st.binary(max_size=1024))
def test_any_other_key_is_refused(key: bytes, other: bytes, plaintext: bytes) -> None:
    blob = Aead(key).seal(plaintext, b"aad")
    if other != key:
        with pytest.raises(AuthenticationFailed):
            Aead(other).open(blob, b"aad")


@given(keys, st.integers(min_value=1, max_value=2**62))
def test_any_wrapped_data_key_unwraps_to_itself(kek: bytes, index_id: int) -> None:
    dek = generate_data_key()
    assert unwrap_data_key(kek, wrap_data_key(kek, dek, index_id), index_id) == dek


@given(keys, st.data())
def test_any_flipped_byte_of_a_wrapped_data_key_is_refused(kek: bytes, data: st.DataObject) -> None:
    wrapped = bytearray(wrap_data_key(kek, generate_data_key(), 1))
    position = data.draw(st.integers(min_value=0, max_value=len(wrapped) - 1))
    wrapped[position] ^= data.draw(st.integers(min_value=1, max_value=255))
    with pytest.raises(KeyUnwrapFailed):
        unwrap_data_key(kek, bytes(wrapped), 1)
