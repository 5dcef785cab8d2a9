"""`quasar check` names the problem in a config but never prints a secret the config took from the environment."""

from __future__ import annotations

from pathlib import Path

import pytest

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
