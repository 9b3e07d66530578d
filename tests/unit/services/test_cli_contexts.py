"""The stored CLI contexts: private file, faithful round trip, environment first."""

from __future__ import annotations

import stat

import pytest

from services.cli import contexts


@pytest.fixture(autouse=True)
def config_home(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    for name in ("HANGAR_URL", "HANGAR_TOKEN", "HANGAR_OPERATOR_TOKEN", "HANGAR_CONTEXT"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path / "cfg"


def test_the_file_is_private_and_round_trips_any_token(config_home):
    odd = 'hgr_"quoted"\\back\nline é'
    path = contexts.set_context("prod", url="https://h.example.com/", token=odd)
    assert path == config_home / "hangar" / "config.toml"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert contexts.load().contexts["prod"] == {"url": "https://h.example.com", "token": odd}
    assert (contexts.url(), contexts.token("HANGAR_TOKEN")) == ("https://h.example.com", odd)


def test_the_environment_wins_and_tokens_stay_with_their_server(monkeypatch):
    contexts.set_context("prod", url="https://h.example.com", token="hgr_ctx")
    monkeypatch.setenv("HANGAR_TOKEN", "hgr_env")
    assert contexts.token("HANGAR_TOKEN") == "hgr_env"
    monkeypatch.delenv("HANGAR_TOKEN")
    monkeypatch.setenv("HANGAR_URL", "https://elsewhere.example.com")
    assert contexts.url() == "https://elsewhere.example.com"
    assert contexts.token("HANGAR_TOKEN") == ""  # never sent to another server


def test_hangar_up_keeps_a_context_the_user_chose():
    contexts.set_context("prod", url="https://h.example.com", token="hgr_ctx")
    contexts.write_local_context("http://127.0.0.1:8080", "op-secret")
    config = contexts.load()
    assert config.current == "prod"
    assert config.contexts["local"] == {
        "url": "http://127.0.0.1:8080",
        "operator_token": "op-secret",
    }


def test_hangar_up_becomes_current_on_a_fresh_machine():
    contexts.write_local_context("http://127.0.0.1:8080", "op-secret")
    assert contexts.load().current == "local"
    assert contexts.token("HANGAR_OPERATOR_TOKEN") == "op-secret"
    assert contexts.token("HANGAR_TOKEN") == ""


def test_mistakes_are_explained(config_home, monkeypatch):
    with pytest.raises(contexts.ContextError, match="use letters"):
        contexts.set_context("no spaces", url="http://x")
    monkeypatch.setenv("HANGAR_CONTEXT", "gone")
    with pytest.raises(contexts.ContextError, match="hangar login"):
        contexts.url()
    monkeypatch.delenv("HANGAR_CONTEXT")
    (config_home / "hangar").mkdir(parents=True, exist_ok=True)
    (config_home / "hangar" / "config.toml").write_text("current = [")
    with pytest.raises(contexts.ContextError, match="not valid TOML"):
        contexts.load()
