"""`quasar check` names the problem in a config but never prints a secret the config took from the environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.server import free_port
from tests.store_support import cli

SECRET = "sk-check-secret-5b7e2a91"
BAD = {
    # found while validating: a message that quotes the value
    "names": (
        "models:\n  - name: ${UP_SECRET}\n    deployments:\n      - {engine: openai, base_url: 'http://x'}\n"
        "  - name: ${UP_SECRET}\n    deployments:\n      - {engine: openai, base_url: 'http://x'}\n",
        "appears twice",
    ),
    # found while building the models
    "base_url": (
        "models:\n  - name: m\n    deployments:\n      - engine: openai\n        base_url: 'ftp://u:${UP_SECRET}@h/v1'\n",
        "is not an http:// or https:// URL",
    ),
    "path": (
        "models:\n  - name: m\n    deployments:\n      - engine: llamacpp\n        path: ${UP_SECRET}\n",
        "model file not found",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_check_does_not_print_a_secret_from_the_environment(tmp_path: Path, case: str) -> None:
    text, problem = BAD[case]
    config = tmp_path / "quasar.yaml"
    config.write_text(text)
    done = cli("check", "--config", str(config), env={"UP_SECRET": SECRET}, check=False)
    assert done.returncode == 1
    assert problem in done.stderr and "${UP_SECRET}" in done.stderr
    assert SECRET not in done.stdout + done.stderr


def test_check_a_newline_in_a_secret_adds_no_key(tmp_path: Path) -> None:
    config = tmp_path / "quasar.yaml"
    config.write_text(
        "models:\n  - name: m\n    deployments:\n      - {engine: openai, base_url: 'http://x'}\n"
        "auth:\n  master_key: ${MY_MASTER}\n"
    )
    done = cli("check", "--config", str(config), env={"MY_MASTER": "x\n  colour: [red]"}, check=False)
    assert done.returncode == 0, done.stderr  # the value is one string: no `auth.colour` to refuse


APIS = {
    # a value `apis` does not know, in a list
    "unknown": ("{engine: openai, base_url: 'http://x', apis: [respones]}", "deployments.0.apis.0: Input should be"),
    # one value, not a list
    "not a list": ("{engine: openai, base_url: 'http://x', apis: responses}", "deployments.0.apis: Input should be"),
    # a known value on an engine that has no use for it
    "anthropic": ("{engine: anthropic, base_url: 'http://x', apis: [responses]}", "'apis' is for openai deployments"),
}


@pytest.mark.parametrize("case", sorted(APIS))
def test_a_bad_apis_value_is_refused_by_check_and_serve_naming_the_field(tmp_path: Path, case: str) -> None:
    deployment, problem = APIS[case]
    config = tmp_path / "quasar.yaml"
    config.write_text(f"models:\n  - name: m\n    deployments:\n      - {deployment}\n")
    checked = cli("check", "--config", str(config), env={}, check=False)
    assert checked.returncode == 1
    assert "quasar.yaml:4: models.0.deployments.0" in checked.stderr and problem in checked.stderr
    if case == "unknown":  # serve reads the config as check does: once is enough to show it refuses to start
        served = cli("serve", "--port", str(free_port()), "--config", str(config), env={}, check=False)
        assert served.returncode == 2 and problem in served.stderr and "Traceback" not in served.stderr
