"""Chinese pages render CJK glyphs with the bundled web font on a machine without a CJK system font."""

from __future__ import annotations

import subprocess

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
WEB_FONT = "WenQuanYi Micro Hei Web"


def _has_system_cjk_font() -> bool:
    try:
        listed = subprocess.run(["fc-list", ":lang=zh", "family"], capture_output=True, text=True, timeout=30).stdout
    except FileNotFoundError:
        return False
    return bool(listed.strip())


def _glyph_images(page, characters: str) -> list[bytes]:
    """Screenshot each character alone in the page's font, at the same size."""
    page.evaluate("""(characters) => {
        for (const character of characters) {
            const span = document.createElement("span");
            span.className = "glyph-probe";
            span.style.cssText = "display:inline-block;width:40px;height:40px;font-size:32px;line-height:40px;background:#fff;color:#000";
            span.textContent = character;
            document.querySelector("main").prepend(span);
        }
    }""", characters)
    page.evaluate("document.fonts.ready.then(() => true)")
    return [probe.screenshot() for probe in page.query_selector_all("span.glyph-probe")]


def test_chinese_page_loads_web_font(page):
    if _has_system_cjk_font():
        pytest.skip("a system CJK font is installed, so the browser never needs the web font; run on a machine without one")
    page.goto("/")
    assert page.evaluate("document.documentElement.lang") == "zh-hans"

    page.evaluate("document.fonts.ready.then(() => true)")
    statuses = page.evaluate(f"[...document.fonts].filter(face => face.family.includes({WEB_FONT!r})).map(face => face.status)")
    assert statuses == ["loaded"]

    # Missing glyphs render as the same empty box, so two different characters must not look alike.
    first, second = _glyph_images(page, "证书")
    assert first != second
    assert page.evaluate("getComputedStyle(document.querySelector('form.language select')).fontFamily").startswith('"Noto Sans CJK SC"')


def test_inline_chart_uses_page_fonts(page):
    page.goto("/")

    # The card history chart is inline SVG that names system fonts in its font-family attribute.
    family = page.evaluate("""() => {
        const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
        svg.setAttribute("font-family", "sans-serif");
        const text = document.createElementNS("http://www.w3.org/2000/svg", "text");
        text.textContent = "调优";
        svg.appendChild(text);
        document.querySelector("main").prepend(svg);
        return getComputedStyle(text).fontFamily;
    }""")

    assert WEB_FONT in family


def test_english_page_does_not_link_web_font(page):
    page.goto("/")
    page.select_option("form.language select[name=language]", "en")
    with page.expect_navigation():
        page.click("form.language button[type=submit]")

    assert page.evaluate("document.documentElement.lang") == "en"
    assert page.evaluate(f"[...document.fonts].filter(face => face.family.includes({WEB_FONT!r})).length") == 0
