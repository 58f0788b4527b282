"""The playground page in a real browser: headless Chromium from Debian's packages, driven by
Playwright, against the running service. Screenshots land in docs/screenshots (the README shows
them)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from tests.support.api import KEY_A

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                reason="chromium is not installed (.ci/run installs it)")


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, service):
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.goto(f"{service.base_url}/")  # redirects to the playground
    assert page.url.endswith("/playground/")
    page.get_by_label("API key").fill(KEY_A)
    page.get_by_role("button", name="Save key").click()
    page.get_by_text(re.compile(r"models can run here")).wait_for()
    yield page
    context.close()


def shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / name), full_page=True)


def generate(page, prompt: str, seed: str = "7") -> None:
    page.get_by_label("Prompt", exact=True).fill(prompt)
    page.get_by_label("Seed", exact=True).fill(seed)
    page.get_by_role("button", name="Generate").click()


def test_a_wrong_key_is_told_clearly(browser, service):
    page = browser.new_page()
    page.goto(f"{service.base_url}/playground/")
    page.get_by_label("API key").fill("not-a-key")
    page.get_by_role("button", name="Save key").click()
    page.get_by_text(re.compile(r"refused \(401")).wait_for()
    page.close()


def test_generate_with_the_tiny_flux(page):
    model = page.get_by_label("Model", exact=True)
    model.select_option("tessera/tiny-flux")
    # the controls follow the model: its default steps, no negative prompt for FLUX
    assert page.get_by_label("Steps", exact=True).input_value() == "4"
    assert not page.get_by_label("Negative prompt").is_visible()
    page.get_by_label("Size", exact=True).select_option("256x256")
    generate(page, "a lighthouse on a cliff at dusk")
    image = page.get_by_role("img", name="tessera/tiny-flux, seed 7")
    image.wait_for(timeout=60_000)
    assert image.evaluate("img => img.complete && img.naturalWidth") == 256
    assert page.get_by_text(re.compile(r"seed 7 · 256×256")).is_visible()
    page.get_by_role("link", name="Download").wait_for()
    page.get_by_role("button", name="Use this seed").click()
    assert page.get_by_label("Seed", exact=True).input_value() == "7"
    shot(page, "playground-generate.png")


def test_compare_two_models(page):
    page.get_by_role("switch", name="Compare").check()
    page.get_by_label("Model", exact=True).select_option("tessera/tiny-flux")
    page.get_by_label("Model 2").select_option("tessera/tiny-sdxl")
    generate(page, "a red fox in the snow", seed="11")
    for model in ("tessera/tiny-flux", "tessera/tiny-sdxl"):
        page.get_by_role("img", name=f"{model}, seed 11").wait_for(timeout=90_000)
    shot(page, "playground-compare.png")


def test_edit_with_a_painted_mask(page, tmp_path, client_a):
    from PIL import Image

    source = tmp_path / "source.png"
    Image.new("RGB", (256, 256), (40, 120, 200)).save(source)
    page.get_by_role("tab", name="Edit an image").click()
    page.get_by_label("Image", exact=True).set_input_files(str(source))
    page.get_by_label("Model", exact=True).select_option("tessera/tiny-flux")
    canvas = page.get_by_label(re.compile("Mask canvas"))
    canvas.wait_for()
    page.wait_for_function("document.getElementById('mask-canvas').width === 256")
    box = canvas.bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.3)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.7, box["y"] + box["height"] * 0.6, steps=8)
    page.mouse.up()
    page.get_by_label("Strength", exact=True).fill("0.9")
    generate(page, "a yellow door", seed="5")
    page.get_by_role("img", name="tessera/tiny-flux, seed 5").wait_for(timeout=60_000)
    newest = client_a.get("/v1/tasks", params={"limit": 1}).json()["data"][0]
    assert newest["request"]["task"] == "inpaint" and newest["request"]["strength"] == 0.9
    shot(page, "playground-edit.png")


def test_upscale_an_image(page, tmp_path, client_a):
    """The Upscale tab: only upscalers to choose, the factor shown, no prompt for an upscaler
    that reads none; the result is the input times the factor."""
    from PIL import Image

    source = tmp_path / "small.png"
    Image.new("RGB", (96, 64), (200, 120, 40)).save(source)
    page.get_by_role("tab", name="Upscale").click()
    model = page.get_by_label("Model", exact=True)
    enabled = model.evaluate("s => [...s.options].filter(o => !o.disabled).map(o => o.value)")
    assert "tessera/tiny-swin2sr" in enabled and "tessera/tiny-flux" not in enabled
    model.select_option("tessera/tiny-swin2sr")
    page.get_by_text("×2: the output is 2 times").wait_for()
    assert not page.get_by_label("Prompt", exact=True).is_visible()
    assert not page.get_by_label("Size", exact=True).is_visible()
    assert not page.get_by_role("button", name="Clear mask").is_visible()  # an edit's alone
    page.get_by_label("Image", exact=True).set_input_files(str(source))
    page.get_by_label("Seed", exact=True).fill("9")
    page.get_by_role("button", name="View code").click()
    assert "/v1/images/upscale" in page.get_by_label("Request code").inner_text()
    page.get_by_role("button", name="Upscale", exact=True).click()
    image = page.get_by_role("img", name="tessera/tiny-swin2sr, seed 9")
    image.wait_for(timeout=90_000)
    assert image.evaluate("img => img.naturalWidth") == 192
    assert page.get_by_text(re.compile(r"seed 9 · 192×128")).is_visible()
    newest = client_a.get("/v1/tasks", params={"limit": 1}).json()["data"][0]
    assert newest["request"]["task"] == "upscale" and newest["request"]["scale"] == 2
    page.get_by_role("button", name="Refresh").click()
    page.get_by_role("button", name=re.compile(r"^upscale ×2 — completed")).first.wait_for()
    # the diffusion upscaler reads a prompt
    model.select_option("tessera/tiny-sd-upscaler")
    assert page.get_by_label("Prompt", exact=True).is_visible()
    shot(page, "playground-upscale.png")


def test_history_restores_and_cancels(page, client_a, tiny_flux_a):
    page.get_by_label("Model", exact=True).select_option("tessera/tiny-flux")
    page.get_by_label("Size", exact=True).select_option("256x256")
    generate(page, "a castle in the clouds", seed="21")
    page.get_by_role("img", name="tessera/tiny-flux, seed 21").wait_for(timeout=60_000)
    slow = client_a.post("/v1/images/generations", json={
        "model": tiny_flux_a, "prompt": "a slow one", "size": "1024x1024",
        "num_inference_steps": 50}).json()["task_id"]
    page.get_by_label("Prompt", exact=True).fill("something else")
    page.get_by_label("Seed", exact=True).fill("")
    page.get_by_role("button", name="Refresh").click()
    page.get_by_role("button", name=f"Cancel {slow}").click()
    page.get_by_role("button", name=re.compile(r"^a slow one — canceled")).wait_for()
    page.get_by_role("button", name=re.compile(r"^a castle in the clouds — completed")).click()
    from playwright.sync_api import expect

    expect(page.get_by_label("Prompt", exact=True)).to_have_value("a castle in the clouds")
    expect(page.get_by_label("Seed", exact=True)).to_have_value("21")
    page.get_by_role("img", name="tessera/tiny-flux, seed 21").wait_for()


def test_view_code(page, service):
    page.get_by_label("Model", exact=True).select_option("tessera/tiny-flux")
    page.get_by_label("Prompt", exact=True).fill("a paper boat")
    page.get_by_role("button", name="View code").click()
    code = page.get_by_label("Request code")
    text = code.inner_text()
    assert text.startswith("curl -s ") and '"prompt": "a paper boat"' in text
    assert "Bearer $TESSERA_API_KEY" in text and KEY_A not in text
    assert f"{service.base_url}/v1/images/generations" in text
    page.get_by_role("tab", name="Python (httpx)").click()
    assert "httpx.post(" in code.inner_text()
    page.get_by_role("tab", name="OpenAI SDK").click()
    text = code.inner_text()
    assert "client.images.generate(" in text and f"{service.base_url}/openai/v1" in text
    shot(page, "playground-code.png")


def test_adapters_with_a_scale_each(page, client_a):
    """An adapter by Hub id, its scale, the code view showing it, and the task running it."""
    page.get_by_label("Model", exact=True).select_option("tessera/tiny-flux")
    page.get_by_label("Size", exact=True).select_option("256x256")
    page.get_by_role("button", name="Add adapter").click()
    page.get_by_label("Adapter 1", exact=True).fill("tessera/tiny-flux-lora")
    page.get_by_label("Adapter 1 scale").fill("0.7")
    page.get_by_role("button", name="View code").click()
    code = page.get_by_label("Request code")
    assert '"path": "tessera/tiny-flux-lora"' in code.inner_text()
    assert '"scale": 0.7' in code.inner_text()
    page.get_by_role("tab", name="OpenAI SDK").click()
    assert '"loras":[{"path":"tessera/tiny-flux-lora","scale":0.7}]' in code.inner_text()
    generate(page, "a lantern in the fog", seed="3")
    page.get_by_role("img", name="tessera/tiny-flux, seed 3").wait_for(timeout=90_000)
    newest = client_a.get("/v1/tasks", params={"limit": 1}).json()["data"][0]
    assert [(a["path"], a["scale"]) for a in newest["request"]["loras"]] == [
        ("tessera/tiny-flux-lora", 0.7)]
    shot(page, "playground-adapters.png")
    # a model whose pipeline takes no adapters hides them
    page.get_by_label("Model", exact=True).select_option("tessera/tiny-pixart-sigma")
    assert not page.get_by_role("button", name="Add adapter").is_visible()


def test_phone_width(browser, service):
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    page = context.new_page()
    page.goto(f"{service.base_url}/playground/")
    page.get_by_label("API key").fill(KEY_A)
    page.get_by_role("button", name="Save key").click()
    page.get_by_text(re.compile(r"models can run here")).wait_for()
    generate_button = page.get_by_role("button", name="Generate")
    assert generate_button.is_visible()
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, width  # nothing wider than the screen
    shot(page, "playground-phone.png")
    context.close()
