"""The `ciphervec keys` commands against the test database."""

from __future__ import annotations

from typer.testing import CliRunner

from app.cli import cli


def test_keys_create_prints_the_key_alone_on_its_last_line(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["keys", "create", "--name", "cli-made"])
    assert result.exit_code == 0, result.output
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("cv_") and " " not in last


def test_keys_list_shows_prefixes_but_never_keys(runner: CliRunner) -> None:
    key = runner.invoke(cli, ["keys", "create", "--name", "listed"]).output.strip().splitlines()[-1]
    listing = runner.invoke(cli, ["keys", "list"])
    assert listing.exit_code == 0
    prefix = key.split("_")[1]
    assert prefix in listing.output and "listed" in listing.output
    assert key not in listing.output


def test_keys_revoke_marks_the_key_revoked(runner: CliRunner) -> None:
    key = runner.invoke(cli, ["keys", "create", "--name", "doomed"]).output.strip().splitlines()[-1]
    prefix = key.split("_")[1]
    assert runner.invoke(cli, ["keys", "revoke", prefix]).exit_code == 0
    line = next(
        row for row in runner.invoke(cli, ["keys", "list"]).output.splitlines()
        if row.startswith(prefix)
    )
    assert "revoked" in line
    assert runner.invoke(cli, ["keys", "revoke", prefix]).exit_code == 1
