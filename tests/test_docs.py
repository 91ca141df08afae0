"""The documentation site (docs/, Sphinx): it builds strictly, documents everything public, and reads
offline in a browser; so does the API viewer that ``digitnet serve`` offers at ``/docs``.

The site build runs the tutorial notebook on real MNIST, so those tests are slow; the browser tests
use Debian's Chromium like tests/test_web_browser.py (skipped without it, except under CI).
"""

from __future__ import annotations

import functools
import importlib
import inspect
import pkgutil
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import click
import pytest
from test_web_browser import browser  # noqa: F401  (the fixture: Debian's Chromium, or skip/fail)

import digitnet
from conftest import serving, sphinx_build
from digitnet.cli import main

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
LOCAL_HOSTS = ("127.0.0.1", "localhost")


@pytest.fixture(scope="module")
def site(docs_site) -> Path:
    """The whole site, built strictly (conftest's ``docs_site``)."""
    assert docs_site.returncode == 0 and not docs_site.warnings, (
        f"the documentation did not build cleanly:\n{docs_site.warnings}"
    )
    return docs_site.site


def public_modules() -> list[str]:
    names = [digitnet.__name__]
    for info in pkgutil.walk_packages(digitnet.__path__, prefix="digitnet."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            names.append(info.name)
    return names


def commands(group, path: str = "digitnet") -> list[tuple[str, object]]:
    """Every command under ``group`` with its full path (``digitnet data fetch``), the group included."""
    found = [(path, group)]
    for name, command in getattr(group, "commands", {}).items():
        found += commands(command, f"{path} {name}")
    return found


def expected_anchors(path: str, command) -> list[str]:
    """The HTML ids sphinx-click gives a command's section, and each of its options and arguments."""
    prog = path.replace(" ", "-")
    ids = [prog]
    for param in command.params:
        if isinstance(param, click.Argument):
            # "[MODEL] IMAGE..." is documented under its first name, as Sphinx reads option names.
            ids.append(f"cmdoption-{prog}-arg-{param.human_readable_name.strip('[').split(']')[0].split()[0]}")
        elif not getattr(param, "hidden", False):
            ids += [f"cmdoption-{prog}-{name.lstrip('-')}" for name in param.opts if name.startswith("--")]
    return ids


@pytest.mark.slow
def test_an_undocumented_public_function_and_a_broken_reference_fail_the_build(tmp_path):
    # The site's own configuration (-c docs) on a tiny module: what `sphinx-build -W` refuses.
    source = tmp_path / "source"
    source.mkdir()
    (tmp_path / "sample_module.py").write_text(
        '"""A sample module; see :func:`sample_module.missing`."""\n\n\ndef undocumented(x):\n    return x\n'
    )
    # The same generated reference as docs/api.rst, on this module.
    (source / "index.rst").write_text(
        "Sample\n======\n\n.. autosummary::\n   :toctree: api\n   :recursive:\n\n   sample_module\n"
    )
    build = sphinx_build(source, tmp_path / "out", "-c", str(DOCS), pythonpath=tmp_path)
    assert build.returncode != 0
    assert "function sample_module.undocumented has no docstring" in build.warnings
    assert "reference target not found: sample_module.missing" in build.warnings


def public_definitions(module_name: str) -> list[str]:
    """The public functions and classes a module defines (not those it imports)."""
    module = importlib.import_module(module_name)
    return [
        f"{module_name}.{name}"
        for name, value in vars(module).items()
        if not name.startswith("_")
        and (inspect.isfunction(value) or inspect.isclass(value))
        and value.__module__ == module_name
    ]


@pytest.mark.slow
def test_the_site_has_a_reference_page_for_every_public_module_function_and_class(site):
    pages = {path.stem for path in (site / "api").glob("digitnet*.html")}
    assert set(public_modules()) <= pages
    for module in public_modules():
        page = (site / "api" / f"{module}.html").read_text()
        missing = [name for name in public_definitions(module) if f'id="{name}"' not in page]
        assert not missing, f"{module}'s reference page lacks {missing}"
    network = (site / "api" / "digitnet.nn.network.html").read_text()
    assert 'id="digitnet.nn.network.Network.predict_proba"' in network  # methods, with their parameters
    assert 'class="sig-param"' in network


@pytest.mark.slow
def test_the_command_line_reference_has_every_command_option_and_argument(site):
    page = (site / "cli.html").read_text()
    every = [anchor for path, command in commands(main) for anchor in expected_anchors(path, command)]
    assert len(every) > 50  # the commands were found, with their options
    missing = [anchor for anchor in every if f'id="{anchor}"' not in page]
    assert not missing, f"the command-line reference lacks {missing}"


@pytest.mark.slow
def test_the_site_loads_nothing_from_other_hosts(site):
    for page in site.rglob("*.html"):
        text = page.read_text()
        for marker in ('src="http', "src='http", '<link rel="stylesheet" href="http', "@import url(http"):
            assert marker not in text, f"{page.relative_to(site)} loads {marker}..."
    assert (site / "_static" / "mathjax" / "MathJax.js").is_file()


# -- in a browser ------------------------------------------------------------------------------


def serve_directory(directory: Path) -> tuple[ThreadingHTTPServer, str]:
    handler = functools.partial(QuietHandler, directory=str(directory))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format, *args) -> None:  # noqa: A002  (the base class names it so)
        pass


#: MathJax 2's combined configuration probes one TeX web font that jupyter-server-mathjax does not
#: ship (it ships the STIX fonts, which the site uses); the probe's 404 is harmless.
MATHJAX_FONT_PROBE = "/_static/mathjax/fonts/HTML-CSS/TeX/otf/"


def failed(response) -> bool:
    return response.status >= 400 and MATHJAX_FONT_PROBE not in response.url


@pytest.fixture
def offline_tab(browser):  # noqa: F811  (the imported fixture)
    """A tab in which every request to another host is refused and recorded."""
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    refused: list[str] = []

    def route(route) -> None:
        url = route.request.url
        if url.startswith(("data:", "blob:")) or urlsplit(url).hostname in LOCAL_HOSTS:
            route.continue_()
        else:
            refused.append(url)
            route.abort()

    context.route("**/*", route)
    tab = context.new_page()
    errors: list[str] = []  # script errors, and local files that failed to load (a font, a script)
    tab.on("pageerror", lambda error: errors.append(str(error)))
    tab.on("response", lambda response: errors.append(response.url) if failed(response) else None)
    yield tab, refused, errors
    context.close()


@pytest.fixture(scope="module")
def site_url(site):
    server, url = serve_directory(site)
    yield url
    server.shutdown()


@pytest.mark.browser
def test_the_tutorial_shows_its_figures_and_formulas_with_nothing_from_other_hosts(offline_tab, site_url):
    tab, refused, errors = offline_tab
    tab.goto(site_url + "tutorial.html", wait_until="load")
    tab.wait_for_function("window.MathJax && MathJax.Hub && MathJax.Hub.queue.running === 0", timeout=60_000)
    tab.wait_for_function("() => document.querySelectorAll('.MathJax_Display, .MathJax').length > 0")
    figures = tab.evaluate(
        "[...document.querySelectorAll('.cell_output img')].map(img => img.complete && img.naturalWidth)"
    )
    assert len(figures) >= 11 and all(width > 0 for width in figures), figures  # as in test_notebook
    assert tab.locator(".MathJax_Display").count() > 0  # display maths typeset
    assert tab.locator(".MathJax_Error, .merror").count() == 0
    assert "failed" not in tab.locator("#MathJax_Message").inner_text().lower()  # e.g. a font file
    assert not refused and not errors, (refused, errors)


@pytest.mark.browser
def test_the_site_search_works_offline(offline_tab, site_url):
    tab, refused, errors = offline_tab
    tab.goto(site_url + "search.html?q=softmax")
    tab.locator("#search-results ul.search li").first.wait_for(timeout=60_000)
    assert "softmax" in tab.locator("#search-results").inner_text().lower()
    assert not refused and not errors, (refused, errors)


@pytest.fixture(scope="module")
def app_url():
    """``digitnet serve``'s app, around the shipped reader model, on a free loopback port."""
    from digitnet.reader import load_reader
    from digitnet.web import create_app

    with serving(create_app(load_reader())) as url:
        yield url


@pytest.mark.browser
def test_the_served_api_viewer_renders_offline(offline_tab, app_url):
    tab, refused, errors = offline_tab
    tab.goto(app_url + "docs")
    tab.locator(".swagger-ui .opblock").first.wait_for(timeout=30_000)
    assert "/api/predict" in tab.locator(".swagger-ui").inner_text()
    assert not refused and not errors, (refused, errors)
    # No ReDoc: it would fetch its logo from its vendor's CDN.
    assert tab.goto(app_url + "redoc").status == 404
