"""The drawing page in a real browser: Debian's Chromium driven by Playwright.

The module starts the real service in a subprocess (``python -m service``), then draws digits
with the mouse and a finger, uploads and drops files, checks the error messages, the keyboard,
a phone-sized viewport and colour contrast, and that /docs and /redoc render with every request
to another host blocked. Every page a test opens has external requests blocked and recorded, and
fails on uncaught script errors and on Content-Security-Policy violations.

Screenshots go to ``test-artifacts/browser/``. ``UPDATE_SCREENSHOTS=1`` also refreshes the ones
in ``docs/`` that the README shows. Without Chromium or Playwright the module is skipped, except
under ``CI=true``, where it fails: CI must run it.
"""

from __future__ import annotations

import base64
import math
import os
import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.browser.make_data import PHOTO_NUMBER
from tests.service.live_server import LiveServer

try:
    from playwright.sync_api import (
        Browser,
        BrowserContext,
        FilePayload,
        Page,
        Route,
        expect,
        sync_playwright,
    )
except ImportError:  # pragma: no cover - reported by the `browser` fixture
    sync_playwright = None  # type: ignore[assignment]
else:
    # The first prediction after start-up can take longer than Playwright's default 5 s on a
    # busy CI machine.
    expect.set_options(timeout=15_000)

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(__file__).resolve().parent / "data"
ARTIFACTS = ROOT / "test-artifacts" / "browser"
DOCS = ROOT / "docs"
CHROMIUM = Path(os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
LOCAL_HOSTS = {"127.0.0.1", "localhost", "[::1]", "::1"}
DESKTOP = {"width": 1024, "height": 900}
PHONE = {"width": 375, "height": 667}

Point = tuple[float, float]


def unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason}: CI must run the browser tests")
    pytest.skip(reason)


def screenshot(page: Page, name: str, *, full_page: bool = True, docs_name: str | None = None) -> None:
    """Save a test artefact; with UPDATE_SCREENSHOTS=1 also the picture in docs/."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    if docs_name and os.environ.get("UPDATE_SCREENSHOTS") == "1":
        shutil.copyfile(path, DOCS / docs_name)


# ---- The service ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    """The real service, as a person would start it, on a free local port.

    BROWSER_TEST_URL points the tests at a service that is already running instead.
    """
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    if os.environ.get("BROWSER_TEST_URL"):
        yield os.environ["BROWSER_TEST_URL"].rstrip("/")
        return
    log = ARTIFACTS / "service.log"
    log.unlink(missing_ok=True)
    # Only the defaults: no API keys or other DIGITS_* settings leak in from the environment.
    server = LiveServer(log, ["--workers", "1"], {"DIGITS_HOST": "127.0.0.1"}, inherit_settings=False)
    try:
        server.start(timeout_s=60)
        yield f"http://127.0.0.1:{server.port}"
    finally:
        server.stop()


# ---- The browser ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if sync_playwright is None:
        unavailable("Playwright is not installed (pip install playwright)")
    if not CHROMIUM.exists():
        unavailable(f"{CHROMIUM} not found (apt-get install chromium)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


# Records Content-Security-Policy violations: the page must need no inline script or style.
CSP_WATCH = """
window.__cspViolations = [];
document.addEventListener('securitypolicyviolation', (e) => {
  window.__cspViolations.push(`${e.violatedDirective} ${e.blockedURI} ${e.sourceFile}:${e.lineNumber}`);
});
"""


@dataclass
class Tab:
    """A page whose requests to anything but this machine are blocked and recorded."""

    page: Page
    context: BrowserContext
    external: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    #: Violations a test expects, matched by prefix ("directive blocked-url").
    expected_csp: list[str] = field(default_factory=list)

    def csp_violations(self) -> list[str]:
        found = self.page.evaluate("window.__cspViolations || []")
        return [v for v in found if not any(v.startswith(expected) for expected in self.expected_csp)]


@pytest.fixture
def open_tab(browser: Browser, base_url: str) -> Iterator[Callable[..., Tab]]:
    tabs: list[Tab] = []

    def open_tab(path: str = "/", **context_options: Any) -> Tab:
        options: dict[str, Any] = {"viewport": DESKTOP, "reduced_motion": "reduce", "base_url": base_url}
        options.update(context_options)
        context = browser.new_context(**options)
        page = context.new_page()
        tab = Tab(page, context)

        def only_local(route: Route) -> None:
            host = urlsplit(route.request.url).hostname or ""
            if host in LOCAL_HOSTS or route.request.url.startswith(("data:", "blob:")):
                route.continue_()
            else:
                tab.external.append(route.request.url)
                route.abort("blockedbyclient")

        context.route("**/*", only_local)
        context.add_init_script(CSP_WATCH)
        page.on("pageerror", lambda exc: tab.errors.append(str(exc)))
        tabs.append(tab)
        page.goto(path)
        return tab

    yield open_tab
    for tab in tabs:
        try:
            assert tab.external == [], f"requests to other hosts: {tab.external}"
            assert tab.errors == [], f"script errors: {tab.errors}"
            assert tab.csp_violations() == [], "Content-Security-Policy violations"
        finally:
            tab.context.close()


# ---- Drawing ----------------------------------------------------------------------------------
def line(a: Point, b: Point, n: int = 8) -> list[Point]:
    return [(a[0] + (b[0] - a[0]) * i / n, a[1] + (b[1] - a[1]) * i / n) for i in range(n + 1)]


def ellipse(cx: float, cy: float, rx: float, ry: float, n: int = 32) -> list[Point]:
    # Start at the top and go a little past a full turn so the ends overlap, as a hand would.
    return [(cx + rx * math.sin(2 * math.pi * i / n), cy - ry * math.cos(2 * math.pi * i / n)) for i in range(n + 3)]


def arc(cx: float, cy: float, r: float, start_deg: float, end_deg: float, n: int = 12) -> list[Point]:
    """Clockwise on screen from ``start_deg`` to ``end_deg`` (0 = up, 90 = right)."""
    angles = [math.radians(start_deg + (end_deg - start_deg) * i / n) for i in range(n + 1)]
    return [(cx + r * math.sin(a), cy - r * math.cos(a)) for a in angles]


# Each digit is a list of strokes in the units of a square as high as the pad (0..1 across,
# 0..1 down); `draw` places the square on the pad.
DIGITS: dict[str, list[list[Point]]] = {
    "1": [line((0.5, 0.14), (0.5, 0.86))],
    "0": [ellipse(0.5, 0.5, 0.22, 0.34)],
    "7": [line((0.26, 0.18), (0.74, 0.18)) + line((0.74, 0.18), (0.42, 0.86))[1:]],
    "4": [
        line((0.55, 0.14), (0.24, 0.6)) + line((0.24, 0.6), (0.76, 0.6))[1:],
        line((0.62, 0.3), (0.62, 0.86)),
    ],
    "2": [arc(0.5, 0.34, 0.2, -80, 120) + line((0.67, 0.44), (0.28, 0.84))[1:] + line((0.28, 0.84), (0.74, 0.84))[1:]],
    "6": [arc(0.62, 0.5, 0.34, -20, -110, n=8) + arc(0.5, 0.64, 0.2, -80, -440, n=24)],
}
# Not a digit: a five-pointed star in one stroke.
STAR = [
    [(0.5 + 0.36 * math.sin(math.radians(144 * i)), 0.52 - 0.36 * math.cos(math.radians(144 * i))) for i in range(6)]
]


def place(strokes: list[list[Point]], left: float, size: float = 1.0) -> list[list[Point]]:
    """Strokes of one digit's square, moved to ``left`` (in pad heights) and scaled by ``size``."""
    top = (1 - size) / 2
    return [[(left + x * size, top + y * size) for x, y in stroke] for stroke in strokes]


def number(text: str, size: float = 0.8) -> list[list[Point]]:
    """The strokes of a number written digit by digit, side by side, centred on a 2:1 pad.

    Digits shrink below ``size`` where needed so that the whole number fits in 1.8 pad heights.
    """
    size = min(size, 1.8 / (0.8 * (len(text) - 1) + 1))
    step = size * 0.8
    start = (2 - step * (len(text) - 1) - size) / 2
    return [stroke for i, d in enumerate(text) for stroke in place(DIGITS[d], start + i * step, size)]


def draw(page: Page, strokes: list[list[Point]], *, centred: bool = True) -> None:
    """Draw strokes with the mouse and wait until the page shows the answer for the last one.

    Points are in pad heights: x from 0 to the pad's width/height, y from 0 to 1. ``centred``
    moves a digit's 0..1 square to the middle of the pad.
    """
    box = page.locator("#pad").bounding_box()
    assert box is not None
    shift = (box["width"] / box["height"] - 1) / 2 if centred else 0.0

    def at(p: Point) -> tuple[float, float]:
        return box["x"] + (p[0] + shift) * box["height"], box["y"] + p[1] * box["height"]

    for stroke in strokes:
        page.mouse.move(*at(stroke[0]))
        page.mouse.down()
        for point in stroke[1:]:
            page.mouse.move(*at(point))
        page.mouse.up()
    expect(page.locator("#result-card")).to_have_attribute("data-state", re.compile("done|error"))


def lit_pixels(page: Page, selector: str = "#seen") -> int:
    """How many pixels of a canvas are not black (the model's input is white ink on black)."""
    return int(
        page.evaluate(
            """(selector) => {
              const c = document.querySelector(selector);
              const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
              let n = 0;
              for (let i = 0; i < d.length; i += 4) if (d[i] > 0) n += 1;
              return n;
            }""",
            selector,
        )
    )


def ink_pixels(page: Page) -> int:
    """How many pixels of the drawing pad are not white paper."""
    return int(
        page.evaluate(
            """() => {
              const c = document.querySelector('#pad');
              const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
              let n = 0;
              for (let i = 0; i < d.length; i += 4) if (d[i] < 250) n += 1;
              return n;
            }"""
        )
    )


def expect_prediction(page: Page, digit: str) -> None:
    expect(page.locator("#error")).to_be_empty()
    expect(page.locator("#digit")).to_have_text(digit)
    expect(page.locator("#confidence")).to_have_text(re.compile(r"^(>99\.9|\d{1,2}\.\d)%$"))
    expect(page.locator("#bars li")).to_have_count(10)
    expect(page.locator("#bars li.top .bar-label")).to_have_text(digit)
    expect(page.get_by_role("status")).to_contain_text(f"as {digit}")
    expect(page.locator("#seen")).to_be_visible()
    assert lit_pixels(page) > 20, "the 28x28 model input was not drawn"


# ---- Tests ------------------------------------------------------------------------------------
@pytest.mark.parametrize("digit", list(DIGITS))
def test_drawn_digit_is_recognised(open_tab: Callable[..., Tab], digit: str) -> None:
    page = open_tab().page
    expect(page.get_by_role("heading", name="Draw a digit")).to_be_visible()
    draw(page, DIGITS[digit])
    expect_prediction(page, digit)
    expect(page.locator("#upload-figure")).to_be_hidden()
    screenshot(page, f"draw-{digit}", docs_name="screenshot.png" if digit == "7" else None)


def test_strokes_replace_the_previous_answer(open_tab: Callable[..., Tab]) -> None:
    page = open_tab().page
    draw(page, DIGITS["1"])
    expect_prediction(page, "1")
    page.get_by_role("button", name="Clear").click()
    expect(page.locator("#result")).to_be_hidden()
    assert ink_pixels(page) == 0
    draw(page, DIGITS["0"])
    expect_prediction(page, "0")


@pytest.mark.parametrize("text", ["42", "2026"])
def test_drawn_number_is_read(open_tab: Callable[..., Tab], text: str) -> None:
    page = open_tab().page
    draw(page, number(text), centred=False)
    expect(page.locator("#error")).to_be_empty()
    expect(page.locator("#text")).to_have_text(text)
    expect(page.locator("#marks li")).to_have_count(len(text))
    expect(page.locator("#marks li .mark-digit")).to_have_text(list(text))
    expect(page.get_by_role("status")).to_contain_text(f"as {text}")
    # A box over each digit, on the pad, left to right.
    boxes = page.locator("#pad-boxes .box")
    expect(boxes).to_have_count(len(text))
    expect(boxes.locator(".box-label")).to_have_text([re.compile(rf"^{d} · ") for d in text])
    lefts = [b["x"] for b in (boxes.nth(i).bounding_box() for i in range(len(text))) if b is not None]
    assert lefts == sorted(lefts) and len(lefts) == len(text)
    pad = page.locator("#pad").bounding_box()
    first = boxes.first.bounding_box()
    assert pad is not None and first is not None
    assert pad["x"] <= first["x"] and first["y"] >= pad["y"] - 1, (pad, first)
    expect(page.locator("#verdict")).to_be_hidden()
    screenshot(page, f"number-{text}", docs_name="screenshot.png" if text == "2026" else None)
    # The next stroke clears the old boxes.
    page.get_by_role("button", name="Clear").click()
    expect(boxes).to_have_count(0)


def test_shape_that_is_not_a_digit_is_called_so(open_tab: Callable[..., Tab]) -> None:
    page = open_tab().page
    draw(page, STAR)
    expect(page.locator("#not-digit")).to_be_visible()
    expect(page.locator("#not-digit")).to_contain_text("That doesn't look like a digit")
    expect(page.locator("#guess")).to_have_text(re.compile(r"^\d \("))
    expect(page.get_by_role("status")).to_contain_text("doesn't look like a digit")
    # The best guess is shown smaller than a digit the model is sure of.
    size = page.evaluate("parseFloat(getComputedStyle(document.querySelector('#digit')).fontSize)")
    assert size < 50, size
    expect(page.locator("#pad-boxes .box.rejected")).to_have_count(1)
    screenshot(page, "not-a-digit")
    # A digit afterwards is presented as a digit again.
    page.get_by_role("button", name="Clear").click()
    draw(page, DIGITS["7"])
    expect_prediction(page, "7")
    expect(page.locator("#not-digit")).to_be_hidden()


def test_photo_of_a_number_is_read(open_tab: Callable[..., Tab]) -> None:
    page = open_tab().page
    page.get_by_label("Choose an image…").set_input_files(DATA / "number-photo.jpg")
    expect(page.locator("#error")).to_be_empty()
    expect(page.locator("#text")).to_have_text(PHOTO_NUMBER)
    expect(page.locator("#upload-figure")).to_be_visible()
    expect(page.locator("#upload-boxes .box")).to_have_count(len(PHOTO_NUMBER))
    screenshot(page, "upload-number-photo")


def test_uploaded_file_is_recognised(open_tab: Callable[..., Tab]) -> None:
    page = open_tab().page
    page.get_by_label("Choose an image…").set_input_files(DATA / "four.png")
    expect_prediction(page, "4")
    expect(page.locator("#upload-figure")).to_be_visible()
    expect(page.locator("#upload-name")).to_contain_text("four.png")
    assert page.evaluate("document.querySelector('#upload-preview').naturalWidth") == 112
    screenshot(page, "upload-four")


def test_file_without_an_image_type_is_sent_as_multipart(open_tab: Callable[..., Tab]) -> None:
    page = open_tab().page
    payload: FilePayload = {
        "name": "scan",
        "mimeType": "application/octet-stream",
        "buffer": (DATA / "four.png").read_bytes(),
    }
    with page.expect_request("**/read?*") as request:
        page.locator("#file").set_input_files(payload)
    assert request.value.headers["content-type"].startswith("multipart/form-data")
    expect_prediction(page, "4")


def test_dropped_file_is_recognised(open_tab: Callable[..., Tab]) -> None:
    page = open_tab().page
    data = base64.b64encode((DATA / "nine.png").read_bytes()).decode()
    transfer = page.evaluate_handle(
        """([data, name]) => {
          const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
          const transfer = new DataTransfer();
          transfer.items.add(new File([bytes], name, { type: 'image/png' }));
          return transfer;
        }""",
        [data, "nine.png"],
    )
    page.dispatch_event("#dropzone", "dragenter", {"dataTransfer": transfer})
    expect(page.locator("#dropzone")).to_have_class(re.compile(r"\bdragging\b"))
    page.dispatch_event("#dropzone", "drop", {"dataTransfer": transfer})
    expect(page.locator("#dropzone")).not_to_have_class(re.compile(r"\bdragging\b"))
    expect_prediction(page, "9")
    screenshot(page, "drop-nine")


def test_blank_image_shows_a_friendly_message(open_tab: Callable[..., Tab], tmp_path: Path) -> None:
    from PIL import Image

    blank = tmp_path / "blank.png"
    Image.new("L", (64, 64), 255).save(blank)
    page = open_tab().page
    page.locator("#file").set_input_files(blank)
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("No digit found")
    expect(alert).not_to_contain_text("{")
    expect(page.locator("#result")).to_be_hidden()
    screenshot(page, "error-no-digit")
    # The next good image replaces the message.
    page.locator("#file").set_input_files(DATA / "four.png")
    expect_prediction(page, "4")


def test_file_that_is_not_an_image_shows_a_friendly_message(open_tab: Callable[..., Tab], tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("not a digit")
    page = open_tab().page
    page.locator("#file").set_input_files(notes)
    alert = page.get_by_role("alert")
    expect(alert).to_have_text(re.compile(r"not supported|could not be read|not accepted", re.IGNORECASE))
    expect(alert).not_to_contain_text('"detail"')


@pytest.mark.parametrize(
    ("status", "detail", "shown"),
    [
        (401, "missing or invalid API key: send it in the 'X-API-Key' header", "needs an API key"),
        (413, "the request body is over the limit of 1,024 bytes", "too large"),
        (503, "the model is not loaded yet: retry when GET /health/ready answers 200", "not ready"),
        (None, "", "Could not reach the service"),
    ],
)
def test_service_errors_are_explained(
    open_tab: Callable[..., Tab], status: int | None, detail: str, shown: str
) -> None:
    """Errors that a healthy local service rarely gives, answered by a stand-in route."""
    tab = open_tab()

    def answer(route: Route) -> None:
        if status is None:
            route.abort("connectionrefused")
        else:
            route.fulfill(status=status, json={"detail": detail})

    tab.page.route("**/read?*", answer)
    tab.page.locator("#file").set_input_files(DATA / "four.png")
    alert = tab.page.get_by_role("alert")
    expect(alert).to_contain_text(shown)
    if detail:
        expect(alert).to_contain_text(detail[1:])  # shown as a sentence: first letter capitalised


def test_keyboard(open_tab: Callable[..., Tab]) -> None:
    page = open_tab().page
    reached = []
    for _ in range(8):
        page.keyboard.press("Tab")
        reached.append(page.evaluate("document.activeElement.id"))
    assert [i for i in reached if i in {"pad", "clear", "file"}][:3] == ["pad", "clear", "file"], reached

    # A keyboard user sees where the focus is.
    page.locator("#pad").focus()
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "clear"
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline != "none"
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "file"
    label_outline = page.evaluate("getComputedStyle(document.querySelector('label[for=file]')).outlineStyle")
    assert label_outline != "none", "the focused file input shows no focus ring on its button"
    screenshot(page, "keyboard-focus-file")

    # Escape and Delete on the pad clear it, and so does the Clear button with Enter.
    scribble = [line((0.3, 0.3), (0.7, 0.7), n=2)]  # any answer will do here
    for key in ("Escape", "Delete", "Enter on Clear"):
        draw(page, scribble)
        expect(page.locator("#result")).to_be_visible()
        assert ink_pixels(page) > 0
        if key == "Enter on Clear":
            page.get_by_role("button", name="Clear").focus()
            page.keyboard.press("Enter")
        else:
            page.locator("#pad").focus()
            page.keyboard.press(key)
        expect(page.locator("#result")).to_be_hidden()
        expect(page.get_by_role("status")).to_contain_text("Cleared")
        assert ink_pixels(page) == 0, f"{key} did not clear the pad"


def test_accessible_names(open_tab: Callable[..., Tab]) -> None:
    page = open_tab().page
    expect(page.get_by_role("heading", level=1)).to_have_text("Digit recognizer")
    expect(page.get_by_label("Drawing area for a digit")).to_have_attribute("tabindex", "0")
    expect(page.get_by_label("Choose an image…")).to_have_attribute("type", "file")
    expect(page.get_by_role("button", name="Clear")).to_be_visible()
    expect(page.get_by_role("status")).to_have_count(1)
    assert page.evaluate("document.documentElement.lang") == "en"


def test_phone_viewport(open_tab: Callable[..., Tab]) -> None:
    tab = open_tab(viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True)
    page = tab.page
    box = page.locator("#pad").bounding_box()
    assert box is not None
    assert box["x"] >= 0 and box["y"] >= 0
    assert box["x"] + box["width"] <= PHONE["width"] and box["y"] + box["height"] <= PHONE["height"], box
    assert box["width"] >= 240, "the drawing pad is too small to draw on"
    # The backing store follows the device pixels, so strokes stay sharp.
    assert page.evaluate("document.querySelector('#pad').width") == round(box["width"] * 2)

    # Draw a 7 with a finger: touch events, which Chromium turns into pointer events.
    cdp = tab.context.new_cdp_session(page)
    stroke = DIGITS["7"][0]
    shift = (box["width"] - box["height"]) / 2  # the digit's square in the middle of the pad
    points = [{"x": box["x"] + shift + x * box["height"], "y": box["y"] + y * box["height"]} for x, y in stroke]
    cdp.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [points[0]]})
    for point in points[1:]:
        cdp.send("Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [point]})
    cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
    expect(page.locator("#result-card")).to_have_attribute("data-state", re.compile("done|error"))
    expect_prediction(page, "7")
    # Drawing did not scroll the page, nothing is wider than the screen, and the answer shows
    # without scrolling.
    assert page.evaluate("window.scrollY") == 0
    digit = page.locator("#digit").bounding_box()
    assert digit is not None and digit["y"] + digit["height"] <= PHONE["height"], digit
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    screenshot(page, "phone", full_page=False, docs_name="screenshot-phone.png")
    screenshot(page, "phone-full")

    # The upload section sits below the result: after an upload the page brings the answer back
    # into view.
    page.get_by_role("heading", name="Or upload an image").scroll_into_view_if_needed()
    expect(page.locator("#digit")).not_to_be_in_viewport()
    page.locator("#file").set_input_files(DATA / "four.png")
    expect_prediction(page, "4")
    expect(page.locator("#digit")).to_be_in_viewport()
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]


def _luminance(rgb: tuple[float, float, float]) -> float:
    def channel(c: float) -> float:
        c = c / 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(c) for c in rgb)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a: tuple[float, float, float], b: tuple[float, float, float]) -> float:
    light, dark = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


# Every visible element with text of its own: its colour, the first opaque background behind
# it, and whether its text is large (WCAG: 24 px, or 18.66 px bold).
TEXT_COLOURS = """() => {
  const rgb = (s) => (s.match(/[\\d.]+/g) || []).map(Number);
  const out = [];
  for (const el of document.querySelectorAll('body *')) {
    const own = Array.from(el.childNodes).some((n) => n.nodeType === 3 && n.textContent.trim());
    if (!own || !el.checkVisibility({ visibilityProperty: true, opacityProperty: true })) continue;
    const style = getComputedStyle(el);
    let bg = null;
    for (let a = el; a && !bg; a = a.parentElement) {
      const c = rgb(getComputedStyle(a).backgroundColor);
      if (c.length === 3 || (c.length === 4 && c[3] === 1)) bg = c.slice(0, 3);
    }
    const size = parseFloat(style.fontSize);
    const large = size >= 24 || (size >= 18.66 && Number(style.fontWeight) >= 700);
    out.push({ text: el.textContent.trim().slice(0, 40), color: rgb(style.color).slice(0, 3),
               bg: bg || [255, 255, 255], large });
  }
  return out;
}"""


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_text_contrast(open_tab: Callable[..., Tab], scheme: str, tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("not a digit")
    page = open_tab(color_scheme=scheme).page
    page.locator("#file").set_input_files(DATA / "four.png")
    expect_prediction(page, "4")
    checked = page.evaluate(TEXT_COLOURS)
    page.locator("#file").set_input_files(notes)  # shows an error message
    expect(page.get_by_role("alert")).not_to_be_empty()
    checked += page.evaluate(TEXT_COLOURS)
    low = [
        (item["text"], round(contrast(tuple(item["color"]), tuple(item["bg"])), 2))
        for item in checked
        if contrast(tuple(item["color"]), tuple(item["bg"])) < (3.0 if item["large"] else 4.5)
    ]
    assert len(checked) > 20
    assert low == [], f"text below WCAG AA contrast ({scheme}): {low}"
    screenshot(page, f"contrast-{scheme}")


def test_swagger_ui_renders_offline(open_tab: Callable[..., Tab]) -> None:
    tab = open_tab("/docs")
    page = tab.page
    expect(page.locator(".opblock-summary-path", has_text=re.compile(r"^/predict$"))).to_be_visible()
    expect(page.locator(".opblock").first).to_be_visible()
    assert page.locator(".opblock").count() >= 3
    screenshot(page, "docs-swagger")
    assert tab.external == []


def test_redoc_renders_offline(open_tab: Callable[..., Tab]) -> None:
    tab = open_tab("/redoc")
    # ReDoc's bundle hard-codes its "redocly logo" <img> from its CDN. The service's CSP blocks it
    # before any request leaves the machine (tab.external stays empty), and ReDoc hides the image
    # when it fails to load. That one violation is expected; any other fails the test.
    tab.expected_csp.append("img-src https://cdn.redoc.ly/")
    page = tab.page
    operations = page.locator("[data-section-id*='operation/']")
    expect(operations.first).to_be_attached()
    assert operations.count() >= 3
    expect(page.get_by_text("/predict", exact=True).first).to_be_attached()
    screenshot(page, "docs-redoc", full_page=False)
    assert tab.external == []
