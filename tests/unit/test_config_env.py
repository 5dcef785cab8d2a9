"""${ENV} references in the config: replaced inside parsed string values, never in the YAML text; never echoed."""

from __future__ import annotations

import json

import pytest

from quasar.config import parse_settings
from quasar.errors import ConfigError

SECRET = "sk-env-secret-8f3a1c0d9e"


def upstream(extra: str = "", api_key: str = "${UPSTREAM_KEY}") -> str:
    return (
        "models:\n  - name: m\n    deployments:\n      - engine: openai\n"
        f"        base_url: http://127.0.0.1:9/v1\n        api_key: {api_key}\n{extra}"
    )


def test_a_hash_in_a_value_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UPSTREAM_KEY", "abc #def")
    settings = parse_settings(upstream())
    assert settings.models[0].deployments[0].api_key == "abc #def"


def test_a_newline_in_a_value_adds_no_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_MASTER", "x\n  api_keys: [attacker-key]")
    settings = parse_settings(upstream(extra="auth:\n  master_key: ${MY_MASTER}\n"))
    assert settings.auth.api_keys == []
    assert settings.auth.master_key == "x\n  api_keys: [attacker-key]"


def test_yaml_syntax_in_a_value_stays_a_string(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UPSTREAM_KEY", "[a, b]: {c: d}")
    monkeypatch.setenv("PARALLEL", "3")
    settings = parse_settings(
        "models:\n  - name: m\n    deployments:\n"
        "      - {engine: llamacpp, path: '${UPSTREAM_KEY}', parallel: '${PARALLEL}'}\n"
    )
    assert settings.models[0].deployments[0].path == "[a, b]: {c: d}"
    assert settings.models[0].deployments[0].parallel == 3  # a number field still takes a numeric string


def test_keys_are_not_interpolated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NAME", "master_key")
    with pytest.raises(ConfigError, match=r"auth.\$\{NAME\}: Extra inputs"):
        parse_settings(upstream(extra="auth:\n  ${NAME}: x\n"))


def test_default_syntax_and_missing_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("UNSET_VAR", raising=False)
    monkeypatch.setenv("EMPTY_VAR", "")
    monkeypatch.setenv("SET_VAR", "from-env")
    text = upstream(
        api_key="${UNSET_VAR}",
        extra="        name: 'a-${SET_VAR:-x}-${UNSET_VAR:-dflt}-${EMPTY_VAR:-e}-${UNSET_VAR}-z'\n",
    )
    deployment = parse_settings(text).models[0].deployments[0]
    assert deployment.api_key == ""  # a missing variable is empty
    assert deployment.name == "a-from-env-dflt-e--z"


def test_a_secret_from_the_environment_is_not_in_the_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UPSTREAM_KEY", SECRET)
    monkeypatch.setenv("DUP", SECRET)
    text = (
        "models:\n  - name: ${DUP}\n    deployments:\n      - {engine: openai, base_url: 'http://x'}\n"
        "  - name: 'prefix-${DUP}'\n    deployments:\n      - {engine: openai, base_url: 'http://x'}\n"
        "  - name: 'prefix-${DUP}'\n    deployments:\n      - {engine: openai, base_url: 'http://x'}\n"
    )
    with pytest.raises(ConfigError) as caught:
        parse_settings(text, "q.yaml")
    message = str(caught.value)
    assert "appears twice" in message and SECRET not in message
    assert "prefix-${DUP}" in message


def test_line_numbers_still_name_the_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHUNK", "-1")
    text = "models:\n  - name: m\n    deployments:\n      - engine: openai\n        base_url: http://x\n"
    text += "        chunk_timeout: ${CHUNK}\n"
    with pytest.raises(ConfigError, match=r"q.yaml:6: models.0.deployments.0.chunk_timeout"):
        parse_settings(text, "q.yaml")


def test_redact_escaped_forms_and_short_values() -> None:
    from quasar.config import redact

    secret = "se'cr\\et\"val\nue"
    secrets = [(secret, "${S}"), ("64", "${N}")]
    shown = redact(f"raw {secret} repr {secret!r} json {json.dumps(secret)}", secrets)
    assert shown == "raw ${S} repr '${S}' json \"${S}\""
    assert redact("must be <= 64, not 640", secrets) == "must be <= ${N}, not 640"
