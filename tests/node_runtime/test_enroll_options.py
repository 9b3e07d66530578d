"""`hangar node enroll|run` options as a newcomer types them: an empty $HANGAR_URL must
not swallow --token, and the data dir has one default that HANGAR_NODE_DATA_DIR moves."""

from __future__ import annotations

import re

from typer.testing import CliRunner

from node_runtime import DEFAULT_DATA_DIR
from node_runtime.cli import app
from node_runtime.settings import NodeSettings

runner = CliRunner()


def said(result) -> str:
    """The output as one line: typer draws usage errors in a wrapped box."""
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", result.output).split())


def test_empty_server_variable_is_a_clear_usage_error_not_a_swallowed_token(monkeypatch):
    monkeypatch.delenv("HANGAR_URL", raising=False)
    # What `--server $HANGAR_URL --token hgt_x` becomes when HANGAR_URL is empty.
    got = runner.invoke(app, ["enroll", "--server", "--token", "hgt_x"])
    assert got.exit_code == 2
    assert "'--token' is not the control plane's URL" in said(got)
    assert "HANGAR_URL" in said(got)


def test_server_must_be_an_http_url(monkeypatch):
    monkeypatch.delenv("HANGAR_URL", raising=False)
    for bad in ("hangar:8080", "ftp://hangar", "http://"):
        got = runner.invoke(app, ["enroll", "--server", bad, "--token", "hgt_x"])
        assert got.exit_code == 2, (bad, got.output)
        assert "http://hangar:8080" in said(got)


def test_one_data_dir_default_that_the_environment_moves(monkeypatch, tmp_path):
    monkeypatch.delenv("HANGAR_NODE_DATA_DIR", raising=False)
    assert NodeSettings().data_dir == DEFAULT_DATA_DIR
    monkeypatch.chdir(tmp_path)
    got = runner.invoke(app, ["run"])
    assert got.exit_code != 0 and f"{DEFAULT_DATA_DIR}/node.json" in str(got.exception)

    monkeypatch.setenv("HANGAR_NODE_DATA_DIR", str(tmp_path / "node1"))
    got = runner.invoke(app, ["run"])  # `run` without --data-dir reads the variable
    assert f"{tmp_path / 'node1'}/node.json" in str(got.exception)
    assert "--help" not in got.output
