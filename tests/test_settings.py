import importlib
import logging

import pytest

from persona import settings


@pytest.fixture
def fresh(monkeypatch, tmp_path):
    """Settings that read a .env in tmp_path and start with no keys in the environment."""
    for name in settings.KNOWN_KEYS:  # setenv first so teardown removes what the .env loader sets
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    monkeypatch.setenv("PERSONA_DOTENV", str(tmp_path / ".env"))
    monkeypatch.setattr(settings, "_loaded", False)
    return tmp_path / ".env"


def test_importing_config_needs_no_key(fresh):
    import config

    importlib.reload(config)
    assert config.get("OPENAI_API_KEY") is None


def test_dotenv_fills_unset_variables_and_environment_wins(fresh, monkeypatch):
    fresh.write_text("# comment\nOPENAI_API_KEY='sk-from-file'\nexport WANDB_PROJECT=proj\nHF_TOKEN=file\n")
    monkeypatch.setenv("HF_TOKEN", "from-env")
    assert settings.get("OPENAI_API_KEY") == "sk-from-file"
    assert settings.get("WANDB_PROJECT") == "proj"
    assert settings.get("HF_TOKEN") == "from-env"


def test_require_names_the_variable_and_never_the_value(fresh, caplog, monkeypatch):
    with caplog.at_level(logging.DEBUG):
        with pytest.raises(settings.MissingSettingError) as err:
            settings.require("OPENAI_API_KEY", "the OpenAI judge")
    message = str(err.value)
    assert "OPENAI_API_KEY is not set: the OpenAI judge needs it" in message and "\n" not in message
    fresh.write_text("OPENAI_API_KEY=sk-secret-value\n")
    monkeypatch.setattr(settings, "_loaded", False)
    assert settings.require("OPENAI_API_KEY", "x") == "sk-secret-value"
    assert "sk-secret-value" not in caplog.text


def test_cache_dir_follows_persona_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("PERSONA_CACHE", str(tmp_path / "c"))
    assert settings.cache_dir() == tmp_path / "c"
