"""KMS registry configuration and the local provider (pure: no database, no network)."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from app.crypto.envelope import generate_data_key
from app.errors import BadRequest, KmsRefused, KmsUnavailable
from app.kms.providers import KeyContext, KmsConfigError, ProviderUnavailable
from app.kms.registry import KmsRegistry, load_config

CONTEXT = KeyContext(index_id=7, tenant="t", index_name="docs")


def _config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "kms.yaml"
    path.write_text(text)
    return path


def _local(tmp_path: Path, key_id: str = "m1", name: str = "main") -> KmsRegistry:
    key_file = tmp_path / f"{key_id}.key"
    key_file.write_text(secrets.token_hex(32))
    return KmsRegistry.from_file(_config(tmp_path, f"""
kms:
  registry:
    {name}: {{provider: local, key_id: {key_id}, key_file: {key_file}}}
"""))


def test_yaml_registry_parses_local_and_aws_entries(tmp_path: Path) -> None:
    config = load_config(_config(tmp_path, """
kms:
  registry:
    main: {provider: local, key_id: m1, key_env: MASTER}
    cloud: {provider: aws, key_id: alias/x, region: eu-west-1}
"""))
    assert sorted(config.kms.registry) == ["cloud", "main"]


def test_unknown_keys_in_an_entry_are_refused(tmp_path: Path) -> None:
    with pytest.raises(KmsConfigError, match="role_arn"):
        load_config(_config(tmp_path, """
kms:
  registry:
    main: {provider: aws, key_id: k, region: r, role_arn: x}
"""))


def test_local_entry_needs_exactly_one_key_source(tmp_path: Path) -> None:
    with pytest.raises(KmsConfigError, match="exactly one of key_file or key_env"):
        load_config(_config(tmp_path, """
kms:
  registry:
    main: {provider: local, key_id: m1}
"""))


def test_unknown_provider_is_refused(tmp_path: Path) -> None:
    with pytest.raises(KmsConfigError):
        load_config(_config(tmp_path, "kms: {registry: {x: {provider: none, key_id: k}}}"))


async def test_local_wrap_round_trips_and_names_its_master_key(tmp_path: Path) -> None:
    registry = _local(tmp_path)
    dek = generate_data_key()
    blob = await registry.wrap("main", dek, CONTEXT)
    assert (blob.provider, blob.key_id, blob.kms_name) == ("local", "m1", "main")
    assert dek not in blob.wrapped
    assert await registry.unwrap(blob, CONTEXT) == dek


async def test_local_wrap_is_bound_to_its_index(tmp_path: Path) -> None:
    registry = _local(tmp_path)
    blob = await registry.wrap("main", generate_data_key(), CONTEXT)
    other = KeyContext(index_id=8, tenant="t", index_name="docs")
    with pytest.raises(KmsRefused):
        await registry.unwrap(blob, other)


async def test_a_blob_is_found_by_key_id_when_its_entry_was_renamed(tmp_path: Path) -> None:
    blob = await _local(tmp_path).wrap("main", generate_data_key(), CONTEXT)
    renamed = KmsRegistry.from_file(_config(tmp_path, f"""
kms:
  registry:
    renamed: {{provider: local, key_id: m1, key_file: {tmp_path / "m1.key"}}}
"""))
    assert len(await renamed.unwrap(blob, CONTEXT)) == 32


async def test_a_blob_whose_key_is_not_configured_is_unavailable(tmp_path: Path) -> None:
    blob = await _local(tmp_path).wrap("main", generate_data_key(), CONTEXT)
    with pytest.raises(KmsUnavailable, match="not configured"):
        await KmsRegistry({}).unwrap(blob, CONTEXT)


async def test_a_missing_master_key_file_is_unavailable(tmp_path: Path) -> None:
    registry = _local(tmp_path)
    (tmp_path / "m1.key").unlink()
    with pytest.raises(KmsUnavailable, match="cannot read master key file"):
        await registry.wrap("main", generate_data_key(), CONTEXT)


def test_a_master_key_of_the_wrong_length_is_refused(tmp_path: Path) -> None:
    registry = _local(tmp_path)
    (tmp_path / "m1.key").write_text("abcd")
    with pytest.raises(ProviderUnavailable, match="32 raw bytes or 64 hex"):
        registry.provider("main").wrap(generate_data_key(), CONTEXT)


def test_an_unknown_entry_is_a_bad_request() -> None:
    with pytest.raises(BadRequest, match="Unknown KMS registry entry: 'x'. Known: \\[\\]"):
        KmsRegistry({}).provider("x")
