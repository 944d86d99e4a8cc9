"""Developer checks of a built course book (`make book` runs the first two): what it would
fetch from other hosts, Markdown tables a reader would see as raw `|---|` text, and with
`--browser`, in headless Chromium, images, formulas, search and content cut off.

    .venv/bin/python tools/book_check.py --profile demo [--browser]
"""

from __future__ import annotations

import argparse
import functools
import http.server
import re
import shutil
import threading
from html.parser import HTMLParser
from pathlib import Path

from depthg_lib.config import chapters, load_profile
from depthg_lib.errors import DepthGError, run_cli

_REMOTE_HTML = re.compile(
    r"<(?:script|img|iframe|source|audio|video)\b[^>]*\bsrc\s*=\s*[\"']?(?:https?:)?//[^\"'\s>]+"
    r"|<link\b[^>]*\bhref\s*=\s*[\"']?(?:https?:)?//[^\"'\s>]+", re.IGNORECASE)
_REMOTE_CSS = re.compile(r"url\(\s*[\"']?(?:https?:)?//[^)]+\)|@import\s+[\"'](?:https?:)?//",
                         re.IGNORECASE)


def remote_references(html_dir: Path) -> list[str]:
    """`file: reference` for every script, style sheet, font or image the pages would fetch
    from another host (plain hyperlinks to other sites are fine: nothing loads them)."""
    found = []
    for path in sorted(html_dir.rglob("*")):
        pattern = {".html": _REMOTE_HTML, ".css": _REMOTE_CSS}.get(path.suffix)
        if pattern is None:
            continue
        for match in pattern.finditer(path.read_text(errors="replace")):
            found.append(f"{path.relative_to(html_dir)}: {match.group(0)[:160]}")
    return found


# a table's rule line; Sphinx's smart quotes turn `---` in plain text into an em dash
_TABLE_RULE = re.compile(r"\|?(?:\s*:?[-\u2013\u2014]+:?\s*\|)+(?:\s*:?[-\u2013\u2014]+:?\s*)?")
_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
         "track", "wbr"}


class _ReadableText(HTMLParser):
    """The text a reader sees on a page, without code a chapter *shows* (its input cells, code
    blocks of the notes), scripts and styles; outputs a cell printed are kept."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack: list[tuple[str, bool, bool]] = []  # (tag, skipped, inside an output)
        self.parts: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag in _VOID:
            return
        skipped, output = self.stack[-1][1:] if self.stack else (False, False)
        classes = (dict(attrs).get("class") or "").split()
        output = output or "cell_output" in classes
        skipped = (skipped or "cell_input" in classes or tag in ("script", "style", "head")
                   or (tag in ("pre", "code") and not output))
        self.stack.append((tag, skipped, output))

    def handle_endtag(self, tag):
        for i in range(len(self.stack) - 1, -1, -1):
            if self.stack[i][0] == tag:
                del self.stack[i:]
                return

    def handle_data(self, data):
        if not (self.stack and self.stack[-1][1]):
            self.parts.append(data)


def raw_markdown_tables(html_dir: Path) -> list[str]:
    """`page: line` for every Markdown table rule (`|---|---|`) a reader would see as text: a
    table MyST-NB did not render (see `nb_render_markdown_format`)."""
    found = []
    for path in sorted(Path(html_dir).rglob("*.html")):
        reader = _ReadableText()
        reader.feed(path.read_text(errors="replace"))
        for line in "\n".join(reader.parts).splitlines():
            if _TABLE_RULE.fullmatch(line.strip()):
                found.append(f"{path.relative_to(html_dir)}: {line.strip()[:80]}")
    return found


def find_chromium() -> str | None:
    """Debian's `chromium` (Playwright's own browser download needs the network)."""
    found = map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))
    return next(filter(None, found), None)


def browser_check(book_dir: Path, names: list[str], screenshot: Path | None = None,
                  query: str = "farthest point sampling", chromium: str | None = None,
                  timeout_ms: int = 30_000) -> dict:
    """Open the book in headless Chromium with every other host cut off and look at it.

    Returns a report: chapters listed on the landing page, per chapter its images, formulas
    and tables, console errors, blocked requests, search hits for `query` and their snippets,
    and `problems` (empty when all is well). Writes a screenshot of chapter 04 to `screenshot`
    if given."""
    from playwright.sync_api import sync_playwright

    chromium = chromium or find_chromium()
    if chromium is None:
        raise DepthGError("no Chromium found on PATH: install Debian's browser with "
                          "`apt-get install chromium` (as root) to check the book in a browser")
    server, base = _serve(book_dir)
    report = {"listed": [], "chapters": {}, "errors": [], "blocked": [], "search_hits": [],
              "search_snippets": [], "problems": []}
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, headless=True)
            context = browser.new_context(viewport={"width": 1280, "height": 900})

            def only_local(route):
                url = route.request.url
                if url.startswith((base, "data:", "blob:")):
                    route.continue_()
                else:
                    report["blocked"].append(url)
                    route.abort()

            context.route("**/*", only_local)
            page = context.new_page()
            page.set_default_timeout(timeout_ms)
            where = {"page": "index.html"}
            page.on("console", lambda m: m.type == "error" and report["errors"].append(
                f"{where['page']}: {m.text}"))
            page.on("pageerror", lambda e: report["errors"].append(f"{where['page']}: {e}"))

            _look_at_landing(page, base, names, report)
            for name in names:
                where["page"] = f"chapters/{name}.html"
                _look_at_chapter(page, base, name, report, screenshot)
            where["page"] = "search.html"
            _look_at_search(page, base, query, report, timeout_ms)
            browser.close()
    finally:
        server.shutdown()
        server.server_close()
    report["problems"] += [f"console error on {e}" for e in report["errors"]]
    report["problems"] += [f"request to another host: {u}" for u in report["blocked"]]
    return report


def _serve(folder: Path):
    """A quiet local web server for `folder` on a free port, and its base address."""
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Quiet, directory=str(folder)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


def _look_at_landing(page, base: str, names: list[str], report: dict) -> None:
    """Every chapter listed on the landing page, its images loaded."""
    page.goto(base + "index.html", wait_until="load")
    hrefs = page.eval_on_selector_all(
        "article a[href]", "els => els.map(e => e.getAttribute('href'))")
    report["listed"] = [n for n in names
                        if any(h.split("#")[0] == f"chapters/{n}.html" for h in hrefs)]
    missing = sorted(set(names) - set(report["listed"]))
    if missing:
        report["problems"].append(f"landing page does not list: {', '.join(missing)}")
    report["problems"] += _image_problems(page, "index.html")


def _look_at_chapter(page, base: str, name: str, report: dict, screenshot: Path | None) -> None:
    """A chapter's images, formulas and tables; what a reader could not read on it."""
    where = f"chapters/{name}.html"
    page.goto(base + where, wait_until="load")
    formulas = _typeset_count(page)
    images = page.evaluate("() => Array.from(document.images).map("
                           "i => [i.getAttribute('src'), i.naturalWidth])")
    tables = page.evaluate("() => document.querySelectorAll('article table').length")
    report["chapters"][name] = {"images": len(images), "formulas": formulas, "tables": tables}
    report["problems"] += _image_problems(page, where)
    report["problems"] += [f"{where}: {p}" for p in page.evaluate(_LAYOUT_JS)]
    has_math = page.evaluate("() => document.querySelectorAll("
                             "'article .math, article mjx-container').length")
    if has_math and not formulas:
        report["problems"].append(f"{where}: math present but not typeset")
    if screenshot is not None and name.startswith("04"):
        _screenshot(page, Path(screenshot))


def _look_at_search(page, base: str, query: str, report: dict, timeout_ms: int) -> None:
    """The search page finds `query`, and shows a snippet of text under each hit."""
    page.goto(base + "search.html?q=" + query.replace(" ", "+"), wait_until="load")
    try:
        page.wait_for_function(
            "() => document.querySelectorAll('#search-results li').length > 0",
            timeout=timeout_ms)
        page.wait_for_function(  # snippets are fetched page by page after the titles
            "() => document.querySelectorAll('#search-results li p.context').length > 0",
            timeout=timeout_ms)
    except Exception:  # playwright's TimeoutError: no result (or no snippet) appeared
        pass
    report["search_hits"] = page.eval_on_selector_all(
        "#search-results li a", "els => els.map(e => e.getAttribute('href'))")
    report["search_snippets"] = page.eval_on_selector_all(
        "#search-results li p.context", "els => els.map(e => e.textContent.trim())")
    if not report["search_hits"]:
        report["problems"].append(f"search for '{query}' found nothing")
    elif not any(report["search_snippets"]):
        report["problems"].append(f"search for '{query}' shows titles without a snippet")


# What a reader could not read on a page: a Markdown table left as `|---|` text (outside the
# code a chapter shows), and content cut off — wider than its box (hidden, or behind a scroll
# bar that browsers often draw only on hover), or sticking out of the text column.
_LAYOUT_JS = r"""() => {
    const main = document.querySelector('article') || document.body;
    const column = main.getBoundingClientRect();
    const out = [];
    const rule = /^\s*\|?(\s*:?[-\u2013\u2014]+:?\s*\|)+(\s*:?[-\u2013\u2014]+:?\s*)?$/;
    const walker = document.createTreeWalker(main, NodeFilter.SHOW_TEXT);
    while (walker.nextNode()) {
        const el = walker.currentNode.parentElement;
        if (el.closest('.cell_input, script, style')) continue;
        if (el.closest('pre, code') && !el.closest('.cell_output')) continue;
        for (const line of walker.currentNode.textContent.split('\n'))
            if (rule.test(line)) out.push('raw Markdown table: ' + line.trim().slice(0, 60));
    }
    const what = el => (el.tagName.toLowerCase() + ' "' +
                        el.textContent.trim().replace(/\s+/g, ' ').slice(0, 50) + '"');
    const cut = [];
    for (const el of main.querySelectorAll('*')) {  // every box that hides what overflows it
        const style = getComputedStyle(el);
        if (style.overflowX === 'visible' || style.display.startsWith('inline')) continue;
        if (el.closest('mjx-assistive-mml') || cut.some(c => c.contains(el))) continue;
        if (el.scrollWidth > el.clientWidth + 2) {  // hidden, or behind a scroll bar
            cut.push(el);
            out.push('cut off (wider than its box): ' + what(el));
        }
    }
    for (const el of main.querySelectorAll('pre, mjx-container[display="true"], table, img')) {
        const box = el.getBoundingClientRect();
        if (box.width > 0 && box.right > column.right + 1 && !cut.some(c => c.contains(el)))
            out.push('sticks out of the text column: ' + what(el));
    }
    return out; }"""


def _typeset_count(page) -> int:
    """Formulas MathJax has typeset, after waiting for it to finish (0 on a page without it)."""
    return page.evaluate("""async () => {
        if (!window.MathJax || !MathJax.startup || !MathJax.startup.promise) return 0;
        await MathJax.startup.promise;
        return document.querySelectorAll('mjx-container').length; }""")


def _image_problems(page, where: str) -> list[str]:
    page.evaluate("""async () => { for (const i of document.images) {
        if (!i.complete) await new Promise(r => { i.onload = r; i.onerror = r; }); } }""")
    broken = page.evaluate("() => Array.from(document.images).filter(i => i.naturalWidth === 0)"
                           ".map(i => i.getAttribute('src'))")
    return [f"{where}: image did not load: {src}" for src in broken]


def _screenshot(page, path: Path) -> None:
    """The chapter page from its first typeset formula down to the first figure after it."""
    box = page.evaluate("""() => {
        const math = document.querySelector('article mjx-container');
        const top = math ? math.getBoundingClientRect().top + window.scrollY : 0;
        const below = Array.from(document.querySelectorAll('article img'))
            .map(i => i.getBoundingClientRect().bottom + window.scrollY).filter(b => b > top);
        const bottom = below.length ? Math.min(...below) : top + 900;
        return {top: Math.max(0, top - 120), bottom: bottom + 40}; }""")
    height = min(max(box["bottom"] - box["top"], 600), 2400)
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path), full_page=True,
                    clip={"x": 0, "y": box["top"], "width": 1280, "height": height})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tools/book_check.py",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="demo", help="the run whose book to check")
    parser.add_argument("--browser", action="store_true",
                        help="also open it in headless Chromium and write "
                             "runs/<profile>/book-04.png")
    args = parser.parse_args(argv)
    run_dir = load_profile(args.profile).paths.run_dir
    book = run_dir / "book"
    if not (book / "index.html").exists():
        raise DepthGError(f"{book} holds no book: `make book PROFILE={args.profile}` builds it")
    problems = [f"loads from another host: {r}" for r in remote_references(book)]
    problems += [f"raw Markdown table: {t}" for t in raw_markdown_tables(book)]
    if args.browser:
        shot = run_dir / "book-04.png"
        report = browser_check(book, [p.stem for p in chapters()], screenshot=shot)
        for name, seen in report["chapters"].items():
            print(f"  {name}: {seen['images']} image(s), {seen['formulas']} formula(s) typeset")
        print(f"  search hits: {len(report['search_hits'])}; screenshot: {shot}")
        problems += report["problems"]
    if problems:
        raise DepthGError(f"the book in {book} has {len(problems)} problem(s) (fix the chapter "
                          f"or book/conf.py, then `make book`): " + "; ".join(problems[:8]))
    print(f"book of '{args.profile}': no problem found in {book}")
    return 0


if __name__ == "__main__":
    run_cli(main)
