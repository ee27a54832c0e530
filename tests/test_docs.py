"""The documentation site builds without a warning, its links resolve, and its math renders.

The site is built once per session, in a process started as soon as pytest has
collected this module (about 60 s on one core beside the other tests; nothing is
trained: the gallery's figures are committed). Sphinx runs with ``-W`` and ``nitpicky``, so
a docstring that does not render, a reference into vi_vae that does not resolve,
a missing image or a page outside every toctree fails the build. The pages are
then read back: every internal link and anchor must exist, every public name must
have its API entry, and headless Chromium (Debian's ``chromium``; those tests skip
without it) must typeset the math with the vendored MathJax and find pages through
the search page.
"""

from __future__ import annotations

import dataclasses
import functools
import html
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from beside import Job

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
#: a fresh build takes ~60 s of one core; far beyond that something hangs (e.g. the network)
BUILD_TIMEOUT = 600
#: seconds of page time Chromium grants the scripts (MathJax, search) before the DOM dump
VIRTUAL_TIME_BUDGET_MS = 20_000
BROWSER_TIMEOUT = 180
#: pages opened in the browser besides the index, and the least math each must show
MATH_PAGES = {
    "concepts/elbo.html": 10,
    "api/generated/vi_vae.log_marginal_likelihood.html": 1,
}

pytestmark = pytest.mark.skipif(
    sys.version_info < (3, 11), reason="the docs extra (Sphinx 9) needs Python >= 3.11"
)


@dataclasses.dataclass
class Site:
    """A built site: its HTML directory and what Sphinx printed."""

    html: Path
    returncode: int
    output: str
    warnings: str


def sphinx_command(directory: Path) -> list[str]:
    """Build the site into ``directory``/html, its warnings into ``directory``/warnings.txt."""
    return [
        sys.executable,
        "-m",
        "sphinx",
        "-E",  # a fresh environment: every page is read, so every warning is seen
        "-W",
        "--keep-going",
        "-q",
        "-b",
        "html",
        "-w",
        str(directory / "warnings.txt"),
        str(DOCS),
        str(directory / "html"),
    ]


#: run by BUILD: the build, then (if it succeeded) every page parsed into pages.json, for
#: the link and API checks (~60 MB of HTML: ~15 s of one core). Sphinx's status is the job's
BUILD_AND_PARSE = """
import json, subprocess, sys
from pathlib import Path

sys.path.insert(0, sys.argv[1])
from test_docs import parse_pages, sphinx_command

directory = Path(sys.argv[2])
returncode = subprocess.run(sphinx_command(directory)).returncode
if returncode == 0:
    pages = parse_pages(directory / "html")
    (directory / "pages.json").write_text(json.dumps(pages))
sys.exit(returncode)
"""
#: the build, started by tests/conftest.py as soon as this module is collected: it runs on
#: one core beside the other tests (the checkout's vi_vae, like docs/conf.py)
BUILD = Job(
    "docs",
    [sys.executable, "-c", BUILD_AND_PARSE, str(Path(__file__).parent), "{directory}"],
    os.environ | {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"},
    timeout=BUILD_TIMEOUT,
    cwd=ROOT,
) if sys.version_info >= (3, 11) else None  # fmt: skip


@pytest.fixture(scope="session")
def site(tmp_path_factory) -> Site:
    completed = BUILD.wait(tmp_path_factory.mktemp("docs"))
    warnings = BUILD.directory / "warnings.txt"
    return Site(
        BUILD.directory / "html",
        completed.returncode,
        completed.stdout + completed.stderr,
        warnings.read_text() if warnings.exists() else "",
    )


def test_site_builds_without_a_warning(site):
    assert site.returncode == 0, site.output
    assert site.warnings.strip() == "", site.warnings
    assert (site.html / "index.html").is_file()


class _Links(HTMLParser):
    """The ids a page defines and the local links it makes."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        for name in ("id", "name"):
            if values.get(name):
                self.ids.add(values[name])
        for name in ("href", "src"):
            target = values.get(name)
            if target and not urlsplit(target).scheme and not target.startswith("//"):
                self.links.append(target)


def _parse(path: Path) -> _Links:
    parser = _Links()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser


def parse_pages(html: Path) -> dict[str, tuple[list[str], list[str]]]:
    """Each page of the site (its path under ``html``): the ids it defines, the links it makes."""
    # _static holds the theme's template files, not pages
    pages = {}
    for path in sorted(html.rglob("*.html")):
        if "_static" not in path.relative_to(html).parts:
            parsed = _parse(path)
            pages[str(path.relative_to(html))] = (sorted(parsed.ids), parsed.links)
    return pages


@dataclasses.dataclass
class Page:
    """What a page defines and links to, as the build's job parsed it."""

    ids: set[str]
    links: list[str]


@pytest.fixture(scope="session")
def pages(site) -> dict[Path, Page]:
    """Every page of the site, parsed once, by the job that built it."""
    assert site.returncode == 0, site.output
    stored = json.loads((site.html.parent / "pages.json").read_text())
    return {site.html / name: Page(set(ids), links) for name, (ids, links) in stored.items()}


def test_every_internal_link_and_anchor_exists(site, pages):
    broken = []
    # every page repeats the theme's navigation: each distinct target is looked up once
    # (and pages of one folder share their relative links)
    exists = functools.cache(lambda path: Path(path).exists())
    ids_of = functools.cache(lambda path: pages[path].ids if path in pages else _parse(path).ids)
    split = functools.cache(urlsplit)
    resolve = functools.cache(lambda folder, path: Path(os.path.normpath(folder / unquote(path))))
    for page, parsed in pages.items():
        for link in parsed.links:
            parts = split(link)
            target = page
            if parts.path:
                target = resolve(page.parent, parts.path)
            if not exists(target):
                broken.append(f"{page.relative_to(site.html)}: {link} (no such file)")
            elif parts.fragment and target.suffix == ".html":
                if unquote(parts.fragment) not in ids_of(target):
                    broken.append(f"{page.relative_to(site.html)}: {link} (no such anchor)")
    assert not broken, "\n".join(sorted(broken)[:50])


def test_every_public_name_is_documented(site, pages):
    """Each module in the package has its page; each name in an ``__all__`` its entry."""
    sys.path.insert(0, str(DOCS / "_ext"))
    try:
        import vi_vae_api
    finally:
        sys.path.remove(str(DOCS / "_ext"))
    modules = vi_vae_api.public_modules()
    assert {"vi_vae", "vi_vae.estimators", "vi_vae.evaluation", "vi_vae.latents"} <= set(modules)
    _, documented = vi_vae_api.collect(modules)
    missing = []
    for entry in documented.values():
        page = site.html / "api" / "generated" / f"{entry.name}.html"
        if entry.kind != "module":
            if not page.is_file():
                missing.append(f"{entry.name}: no page")
            elif entry.name not in (pages[page] if page in pages else _parse(page)).ids:
                missing.append(f"{entry.name}: no entry on its page")
        elif not page.is_file():
            missing.append(f"module {entry.name}: no page")
    assert not missing, "\n".join(missing)
    assert len(documented) > 100  # the package exports well over a hundred names


def _chromium() -> str | None:
    return next(filter(None, map(shutil.which, ("chromium", "chromium-browser"))), None)


def _dump_dom(browser: str, url: str) -> tuple[str, str]:
    """The DOM of ``url`` after its scripts ran, and the browser's log (console errors)."""
    completed = subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",  # CI runs as root
            "--disable-gpu",
            "--enable-logging=stderr",
            f"--virtual-time-budget={VIRTUAL_TIME_BUDGET_MS}",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=BROWSER_TIMEOUT,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    return completed.stdout, completed.stderr


@pytest.fixture(scope="session")
def browser(site) -> str:
    assert site.returncode == 0, site.output
    found = _chromium()
    if found is None:
        pytest.skip("chromium is not installed (apt-get install chromium; .ci/run does)")
    return found


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="session")
def served(site, browser):
    """The built site over HTTP on the loopback interface, as a reader's browser gets it.

    (Over ``file://`` Chromium refuses the ``fetch`` the search page uses for its
    result summaries.)
    """
    handler = functools.partial(_QuietHandler, directory=str(site.html))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


def _script_errors(log: str) -> list[str]:
    return [line for line in log.splitlines() if "CONSOLE" in line and "Uncaught" in line]


def test_index_opens_in_a_browser(browser, served):
    dom, log = _dump_dom(browser, f"{served}/index.html")
    assert "Getting started" in dom and "API reference" in dom
    assert not _script_errors(log), _script_errors(log)


@pytest.mark.parametrize("page", sorted(MATH_PAGES))
def test_math_is_typeset_by_mathjax(site, browser, served, page):
    static = (site.html / page).read_text()
    assert "_static/mathjax/tex-chtml.js" in static  # the local copy, not a CDN
    expressions = len(re.findall(r'class="math', static))
    assert expressions >= MATH_PAGES[page]
    dom, log = _dump_dom(browser, f"{served}/{page}")
    typeset = dom.count("<mjx-container")
    # every expression became MathJax output, and TeX reported no error in any
    assert typeset >= expressions, f"{typeset} of {expressions} expressions typeset on {page}"
    assert "<mjx-merror" not in dom
    assert not _script_errors(log), _script_errors(log)


def test_search_finds_a_concept_page(browser, served):
    dom, log = _dump_dom(browser, f"{served}/search.html?q=reparameterization")
    results = re.search(r'<ul[^>]*class="search"[^>]*>(.*?)</ul>', dom, flags=re.DOTALL)
    assert results is not None, "the search page shows no result list"
    assert "concepts/reparameterization.html" in results.group(1)
    assert 'class="context"' in results.group(1)  # the excerpts, fetched from the pages
    assert not _script_errors(log), _script_errors(log)


#: pages whose tables hold numbers with their standard errors, and a page of long equations
LAYOUT_PAGES = ("compare-mnist-5k/report.html", "concepts/elbo.html")
#: the reader's window: a laptop screen
LAYOUT_WIDTH = 1280
#: run inside the page once it is laid out: numbers split across lines, and content
#: (tables, display equations) wider than the article without a sideways scroll
LAYOUT_PROBE = """
<script>
function measure() {
  const page = document.querySelector("iframe").contentDocument;
  const article = page.querySelector("article.bd-article");
  const split = [], overflowing = [];
  for (const cell of page.querySelectorAll("article table td")) {
    const text = cell.textContent;
    for (const match of text.matchAll(/[-\\u2212]?\\d+\\.\\d+/g)) {
      const node = [...cell.querySelectorAll("*"), cell].flatMap(e => [...e.childNodes])
        .find(n => n.nodeType === 3 && n.textContent.includes(match[0]));
      if (!node) continue;
      const range = page.createRange();
      const start = node.textContent.indexOf(match[0]);
      range.setStart(node, start);
      range.setEnd(node, start + match[0].length);
      const tops = new Set([...range.getClientRects()].map(r => Math.round(r.top)));
      if (tops.size > 1) split.push(match[0]);
    }
  }
  const limit = article.getBoundingClientRect().right + 1;
  for (const wide of page.querySelectorAll("article table, article mjx-container[display]")) {
    if (wide.getBoundingClientRect().right <= limit) continue;
    let box = wide.parentElement, scrolls = false;
    for (; box && box !== article; box = box.parentElement) {
      const style = page.defaultView.getComputedStyle(box);
      if (["auto", "scroll"].includes(style.overflowX) &&
          box.getBoundingClientRect().right <= limit) { scrolls = true; break; }
    }
    const own = page.defaultView.getComputedStyle(wide).overflowX;
    if (!scrolls && !["auto", "scroll"].includes(own)) overflowing.push(wide.tagName);
  }
  document.getElementById("result").textContent =
    JSON.stringify({split: split, overflowing: overflowing,
                    cells: page.querySelectorAll("article table td").length});
}
</script>
"""


@pytest.mark.parametrize("page", LAYOUT_PAGES)
def test_numbers_stay_whole_and_wide_content_scrolls(site, browser, served, page):
    # the page in a same-origin frame of a laptop's width, measured by a script
    probe = site.html / "_layout_probe.html"
    probe.write_text(
        f'<html><body><pre id="result">not measured</pre>{LAYOUT_PROBE}'
        f'<iframe width="{LAYOUT_WIDTH}" height="1400" src="{page}" '
        f'onload="setTimeout(measure, 3000)"></iframe></body></html>'
    )
    try:
        dom, log = _dump_dom(browser, f"{served}/_layout_probe.html")
    finally:
        probe.unlink()
    found = re.search(r'<pre id="result">(.*?)</pre>', dom, flags=re.DOTALL)
    assert found is not None and found.group(1) != "not measured", dom[-2000:]
    result = json.loads(html.unescape(found.group(1)))
    if page.startswith("compare"):
        assert result["cells"] > 20  # the results tables were measured
    assert result["split"] == [], f"numbers broken across lines on {page}: {result['split']}"
    assert result["overflowing"] == [], f"content wider than the text on {page}"
    assert not _script_errors(log), _script_errors(log)


# -- the commands that regenerate the published numbers -----------------------------------

#: a script the pages run: ``python benchmarks/X.py ...`` (examples and the gallery too)
SCRIPT_COMMAND = re.compile(
    r"python (?:-m )?((?:benchmarks|examples|docs/gallery)/[\w/]+\.py)((?:[^\n`]|\\\n)*)"
)
#: ``vi-vae [global flags] SUBCOMMAND ...`` (or ``-m vi_vae`` under torchrun)
CLI_COMMAND = re.compile(r"(?:vi-vae|-m vi_vae) ((?:--\S+ )*)([a-z]+)((?:[^\n`]|\\\n)*)")
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")


def _published_pages() -> dict[str, str]:
    """Every Markdown page of the site and the README, continuation lines joined."""
    pages = [path for path in DOCS.rglob("*.md") if "_build" not in path.parts]
    return {
        str(path.relative_to(ROOT)): path.read_text(encoding="utf-8").replace("\\\n", " ")
        for path in [*pages, ROOT / "README.md"]
    }


def test_published_commands_name_existing_scripts_and_flags():
    """A number's regenerating command must still run: its script exists and takes its flags.

    Scripts declare their flags literally (``parser.add_argument("--flag", ...)``), so a
    flag is looked up in the script's source; ``vi-vae`` commands are checked against
    the command line's own parser. A renamed flag or script fails here, not in a reader's
    shell.
    """
    import argparse

    from vi_vae.cli.parser import build_parser

    parser = build_parser()
    subcommands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    global_flags = {flag for action in parser._actions for flag in action.option_strings}
    cli_flags = {
        name: global_flags | {flag for action in sub._actions for flag in action.option_strings}
        for name, sub in subcommands.choices.items()
    }
    wrong, scripts, commands = [], 0, 0
    for page, text in _published_pages().items():
        for found in SCRIPT_COMMAND.finditer(text):
            scripts += 1
            script = ROOT / found.group(1)
            if not script.is_file():
                wrong.append(f"{page}: {found.group(1)} does not exist")
                continue
            source = script.read_text(encoding="utf-8")
            wrong += [
                f"{page}: {found.group(1)} takes no {flag}"
                for flag in FLAG.findall(found.group(2))
                if f'"{flag}"' not in source
            ]
        for found in CLI_COMMAND.finditer(text):
            name = found.group(2)
            if name in cli_flags:
                commands += 1
                wrong += [
                    f"{page}: vi-vae {name} takes no {flag}"
                    for flag in FLAG.findall(found.group(3))
                    if flag not in cli_flags[name]
                ]
    assert not wrong, "\n".join(wrong)
    assert scripts > 20 and commands > 50  # the patterns still find the pages' commands
