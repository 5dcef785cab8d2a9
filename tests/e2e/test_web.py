"""The playground (/) and the dashboard (/dashboard) in a real headless Chromium (Debian's package, driven
by Playwright; no browser download), against a real Quasar serving the built-in model and a fake upstream
whose reply is an HTML injection attempt."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import openai
import pytest
import yaml
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.fake_provider import FakeProvider
from tests.gateway_config import upstream
from tests.server import Running, quasar_server

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
MASTER = "sk-master-web-test"
INJECTION = "<img src=x onerror=\"document.title='pwned'\">"
SIZES = {"desktop": (1280, 800), "phone": (390, 844)}


class HtmlProvider(FakeProvider):
    """A provider whose every reply tries to inject HTML into the page that shows it."""

    def _text(self) -> list[str]:
        return ["Look: ", INJECTION, " and **bold**"]


@pytest.fixture(scope="module")
def web() -> Iterator[Running]:
    with HtmlProvider("htmlco") as fake:
        config = {
            "models": [
                {
                    "name": "spark",
                    "deployments": [{"engine": "llamacpp", "path": "builtin:smollm2-135m-instruct", "parallel": 2}],
                },
                {"name": "html", "deployments": [upstream(fake)]},
            ]
        }
        # timeout: loading the built-in model took 31 s on the shared VM under load
        with quasar_server(yaml.safe_dump(config), env={"QUASAR_MASTER_KEY": MASTER}, timeout=180) as running:
            yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert os.path.exists(CHROMIUM), "Debian's chromium is missing: `make test` installs it (apt-get install chromium)"
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the screenshots go (printed, so they can be found and looked at)."""
    folder = tmp_path_factory.mktemp("screenshots")
    print(f"screenshots in {folder}")
    return folder


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    context.close()
    assert not errors, f"script errors on the page: {errors}"


def screenshots(page: Page, folder: Path, name: str) -> None:
    page.evaluate("window.scrollTo(0, 0)")
    for size, (width, height) in SIZES.items():
        page.set_viewport_size({"width": width, "height": height})
        page.screenshot(path=str(folder / f"{name}-{size}.png"))
    page.set_viewport_size({"width": 1280, "height": 800})


def open_playground(page: Page, web: Running, model: str = "spark") -> None:
    page.goto(web.url + "/")
    page.fill("#api-key", MASTER)
    page.dispatch_event("#api-key", "change")
    page.wait_for_selector(f"#model option[value={model}]", state="attached")
    page.select_option("#model", model)


def log_row(web: Running, request_id: str, want: str | None = None) -> dict[str, Any]:
    """The request's log row (written within a second), once its status is `want` when given."""
    deadline = time.monotonic() + 10
    while True:
        got = httpx.get(f"{web.v1}/requests/{request_id}", headers={"Authorization": f"Bearer {MASTER}"})
        if got.status_code == 200 and (want is None or got.json()["status"] == want):
            return got.json()
        assert time.monotonic() < deadline, f"no row for {request_id} with status {want}: {got.text}"
        time.sleep(0.2)


def test_playground_streams_a_reply_in_pieces(web: Running, page: Page, shots: Path) -> None:
    open_playground(page, web)
    page.fill("#p-max_tokens", "48")
    page.fill("#p-temperature", "0")
    page.fill("#system", "You are a helpful assistant.")
    # Record the reply's length each time the page changes it.
    page.evaluate(
        """() => { window.lengths = [];
        new MutationObserver(() => { const c = document.querySelector('.assistant .content');
          if (c) window.lengths.push(c.textContent.length); })
        .observe(document.querySelector('#messages'), {subtree: true, childList: true, characterData: true}); }"""
    )
    page.fill("#prompt", "Tell me about the sea in three sentences.")
    page.click("#send")
    expect(page.locator("#stats [data-stat=cost]")).to_be_visible(timeout=90_000)  # slow on a loaded VM
    lengths = [n for n in page.evaluate("window.lengths") if n]
    assert len(set(lengths)) >= 5, f"the reply arrived in {len(set(lengths))} pieces: {lengths}"
    assert lengths == sorted(lengths)
    assert page.inner_text(".assistant .content").strip()
    stats = page.inner_text("#stats")
    for name in ("status done", "tokens ", "TTFT ", "tokens/s ", "cost $"):
        assert name in stats, stats
    row = log_row(web, page.get_attribute("#stats", "data-request-id") or "")
    assert row["status"] == "ok" and row["stream"] and row["model"] == "spark"
    assert row["completion_tokens"] == int(page.inner_text("#stats [data-stat=tokens]").split()[1])
    screenshots(page, shots, "playground")


def test_stop_cancels_the_generation_on_the_server(web: Running, page: Page) -> None:
    open_playground(page, web)
    page.fill("#p-max_tokens", "1500")
    page.fill("#p-temperature", "0")  # greedy: a long count every run (sampled, it sometimes ended at once)
    page.fill("#prompt", "Count from 1 to 1000, separated by commas.")
    page.click("#send")
    page.wait_for_function("() => (document.querySelector('.assistant .content')?.textContent || '').length > 10")
    page.click("#stop")
    expect(page.locator("#stats [data-stat=status]")).to_have_text("status stopped")
    shown = page.inner_text(".assistant .content")
    row = log_row(web, page.get_attribute("#stats", "data-request-id") or "", want="cancelled")
    assert row["completion_tokens"] < 1500, row
    assert shown.strip(), "the part of the reply that came before the stop is still shown"


def test_view_code_python_snippet_runs_against_the_server(web: Running, page: Page) -> None:
    open_playground(page, web)
    page.fill("#p-max_tokens", "12")
    page.fill("#p-seed", "7")
    page.fill("#prompt", "Say hello.")
    page.click("#view-code")
    page.click(".tabs [data-lang=python]")
    snippet = page.inner_text("#code")
    assert f'base_url="{web.url}/v1"' in snippet
    assert "max_tokens=12" in snippet and "seed=7" in snippet and '"content": "Say hello."' in snippet
    for lang, shape in (("curl", f"curl {web.url}/v1/chat/completions"), ("javascript", 'import OpenAI from "openai"')):
        page.click(f".tabs [data-lang={lang}]")
        assert shape in page.inner_text("#code")
    script = snippet.replace("YOUR_API_KEY", MASTER)  # what a user does with the placeholder
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip()


WEATHER_TOOL = (
    '[{"type": "function", "function": {"name": "get_weather", "description": "The weather in a city",'
    ' "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]'
)


def test_tools_are_sent_and_their_calls_shown_and_in_view_code(web: Running, page: Page, shots: Path) -> None:
    open_playground(page, web)
    page.fill("#p-tools", "[{")
    page.fill("#prompt", "What is the weather in Paris?")
    page.click("#send")
    expect(page.locator("#chat-error")).to_contain_text("tools: not valid JSON")
    assert page.locator(".message").count() == 0  # nothing was sent
    assert page.input_value("#prompt") == "What is the weather in Paris?"
    page.fill("#p-tools", WEATHER_TOOL)
    page.select_option("#p-tool_choice", "function:get_weather")
    page.fill("#p-max_tokens", "60")
    page.fill("#p-seed", "1")
    page.click("#send")
    expect(page.locator("#stats [data-stat=status]")).to_have_text("status done", timeout=90_000)
    call = page.locator(".assistant .tool-call[data-name=get_weather]")
    expect(call).to_have_count(1)
    assert isinstance(json.loads(call.locator("pre").inner_text())["city"], str)
    row = log_row(web, page.get_attribute("#stats", "data-request-id") or "")
    assert row["status"] == "ok"
    screenshots(page, shots, "playground-tools")
    page.fill("#prompt", "And in Rome?")
    page.click("#view-code")
    page.click(".tabs [data-lang=python]")
    snippet = page.inner_text("#code")
    assert '"name": "get_weather"' in snippet and "tools=[" in snippet
    assert 'tool_choice={"type": "function", "function": {"name": "get_weather"}}' in snippet
    for lang in ("curl", "javascript"):
        page.click(f".tabs [data-lang={lang}]")
        assert '"tool_choice": {' in page.inner_text("#code")
    done = subprocess.run(
        [sys.executable, "-c", snippet.replace("YOUR_API_KEY", MASTER)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "get_weather" in done.stdout  # the tool calls are what it prints


def test_api_errors_are_shown_as_the_api_words_them(web: Running, page: Page) -> None:
    page.goto(web.url + "/")
    expected = httpx.get(f"{web.v1}/models").json()["error"]
    expect(page.locator("#models-error")).to_have_text(f"{expected['message']} ({expected['code']})")
    open_playground(page, web)
    page.fill("#p-temperature", "5")
    page.fill("#prompt", "hi")
    page.click("#send")
    wrong = httpx.post(
        f"{web.v1}/chat/completions",
        headers={"Authorization": f"Bearer {MASTER}"},
        json={"model": "spark", "messages": [{"role": "user", "content": "hi"}], "temperature": 5, "stream": True},
    ).json()["error"]
    expect(page.locator("#chat-error")).to_contain_text(wrong["message"])


def test_model_html_is_shown_as_text(web: Running, page: Page, shots: Path) -> None:
    open_playground(page, web, model="html")
    page.fill("#prompt", "Show me a picture.")
    page.click("#send")
    expect(page.locator("#stats [data-stat=status]")).to_have_text("status done")
    content = page.locator(".assistant .content")
    assert INJECTION in content.inner_text()
    assert content.locator("img").count() == 0
    assert content.locator("strong").inner_text() == "bold"  # Markdown still renders
    assert page.title() != "pwned"
    headers = httpx.get(web.url + "/").headers
    assert "script-src 'self'" in headers["content-security-policy"]
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert headers["x-content-type-options"] == "nosniff"
    page.click("#view-code")
    screenshots(page, shots, "playground-code")


def test_dashboard_shows_the_request_and_its_trace(web: Running, page: Page, shots: Path) -> None:
    client = openai.OpenAI(base_url=web.v1, api_key=MASTER, max_retries=0)
    made = client.chat.completions.with_raw_response.create(
        model="spark",
        messages=[{"role": "user", "content": "Hi"}],
        max_tokens=8,
        extra_body={"customer_identifier": "acme"},
    )
    request_id = made.headers["x-request-id"]
    log_row(web, request_id)
    page.goto(web.url + "/dashboard")
    page.fill("#master-key", MASTER)
    page.dispatch_event("#master-key", "change")
    row = page.locator(f"#requests tr[data-request-id='{request_id}']")
    expect(row).to_be_visible()
    expect(page.locator("#charts figure")).to_have_count(7)
    # one bucket with requests in the range: the empty buckets around it are 0, so the line is drawn
    expect(page.locator("figure[data-chart='requests per minute'] polyline")).to_have_count(1)
    expect(page.locator("#deployments tr[data-deployment='spark#0']")).to_contain_text("/ 2")
    row.click()
    detail = page.locator("#detail")
    expect(detail.locator(".trace")).to_contain_text("spark#0 via llamacpp: 200")
    expect(detail).to_contain_text("candidates")
    page.fill("#f-customer", "acme")
    page.click("#filters button[type=submit]")
    expect(page.locator("#requests tbody tr")).to_have_count(1)
    screenshots(page, shots, "dashboard")


def test_dashboard_creates_and_revokes_a_key(web: Running, page: Page) -> None:
    page.goto(web.url + "/dashboard")
    page.fill("#master-key", MASTER)
    page.dispatch_event("#master-key", "change")
    page.fill("#k-name", "browser-made")
    page.fill("#k-rpm", "100")
    page.click("#k-submit")
    key = page.inner_text("#new-key-value")
    client = openai.OpenAI(base_url=web.v1, api_key=key, max_retries=0)
    assert client.chat.completions.create(model="html", messages=[{"role": "user", "content": "hi"}]).choices
    row = page.locator("#keys tr[data-key-name='browser-made']")
    row.locator("button.edit").click()
    page.fill("#k-rpm", "250")
    page.click("#k-submit")
    expect(row).to_contain_text("250")
    row.locator("button.revoke").click()
    row.locator("button.revoke").click()
    expect(row.locator(".state")).to_contain_text("revoked")
    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(model="html", messages=[{"role": "user", "content": "hi"}])
