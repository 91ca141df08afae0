"""Sphinx configuration of digitnet's documentation site (``sphinx-build -W docs site``).

Everything a page needs is served from the built site: the theme's fonts and scripts (Furo uses
system fonts), the search index (Sphinx's own), and MathJax (copied from the
``jupyter-server-mathjax`` package). The notebook is executed at build time by myst-nb; the
command-line and Python references are generated from the click commands and the docstrings.
"""

from __future__ import annotations

import importlib
import os
import re
import shutil
import sys
from pathlib import Path

import jupyter_server_mathjax
from sphinx.util import logging

logger = logging.getLogger(__name__)
DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
SRC = ROOT / "src"
# Document (and run the notebook against) this checkout's digitnet, not some other installed copy;
# the notebook's kernel inherits PYTHONPATH.
sys.path.insert(0, str(SRC))
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")]))

import digitnet  # noqa: E402

project = "digitnet"
author = "The digitnet developers"
copyright = "the digitnet developers, MIT licence"
version = release = digitnet.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "numpydoc",
    "sphinx_click",
    "myst_nb",
]
exclude_patterns = ["_build", "_templates", "Thumbs.db", ".DS_Store", "**.ipynb_checkpoints"]
templates_path = ["_templates"]

# Strict: every cross-reference must resolve (the build runs with -W, so a warning fails it).
# Names from other projects are not checked: resolving them would need their inventories online.
nitpicky = True
EXTERNAL = (
    r"(numpy|np|click|fastapi|starlette|pydantic|pydantic_core|optuna|typing|typing_extensions|collections|pathlib|os|io|re|"
    r"abc|enum|json|zipfile|subprocess|threading|concurrent|socket|datetime|types|dataclasses|argparse|"
    r"pickle|tempfile|warnings|onnx|onnxruntime|ray|PIL|matplotlib|scipy|rich|uvicorn|h11|threadpoolctl|platformdirs|sklearn|asyncio)(\..*)?"
)
BUILTIN = r"(int|float|str|bytes|bool|dict|list|tuple|set|frozenset|object|type|None|Path|Exception|\w+Error)(\[.*)?"
# Pydantic's field metadata in signatures, and private names (``_Schema``), have no page to link to.
PYDANTIC = r"(annotated_types\.)?(Ge|Le|Gt|Lt|MinLen|MaxLen|FieldInfo|Field|NoneType|_PydanticGeneralMetadata)"
PRIVATE = r"(digitnet\.[\w.]*\.)?_\w+"
# Type aliases and the limits in pydantic field annotations render as their names.
ALIASES = r"(PathLike|MAX_\w+)"
nitpick_ignore_regex = [(r"py:.*", pattern) for pattern in (EXTERNAL, BUILTIN, PYDANTIC, PRIVATE, ALIASES)]
nitpick_ignore = [("py:meth", "fail")]  # in click's docstring of ParamType.convert, which ours inherit
# ``type[...]`` in a signature also matches the ``type`` fields of the model-file schemas.
suppress_warnings = ["ref.python"]

# The Python reference: one page per public module, generated (see _templates/autosummary).
autosummary_generate = True
autosummary_imported_members = False
autosummary_ignore_module_all = True
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_preserve_defaults = True
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False

# Markdown pages (MyST) and the executed notebook (myst-nb).
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence"]
myst_heading_anchors = 3
nb_execution_mode = os.environ.get("DIGITNET_DOCS_EXECUTE", "cache")
nb_execution_timeout = 900
nb_execution_raise_on_error = True
nb_execution_in_temp = True
nb_execution_show_tb = True
nb_merge_streams = True

# HTML: Furo (system fonts, no web fonts), MathJax from the built site, no request leaves it.
html_theme = "furo"
html_title = f"digitnet {release}"
html_static_path: list[str] = []
MATHJAX_DIR = "mathjax"
mathjax_path = f"{MATHJAX_DIR}/MathJax.js?config=TeX-AMS-MML_HTMLorMML-full"
# MathJax 2 (what the package ships): typeset Sphinx's \( \) and \[ \] inside elements of class
# "math" (and notebook outputs) only; MyST marks the rest of each page to be left alone.
mathjax2_config = {
    "tex2jax": {
        "inlineMath": [["\\(", "\\)"]],
        "displayMath": [["\\[", "\\]"]],
        "processClass": "tex2jax_process|mathjax_process|math|output_area",
        "ignoreClass": "tex2jax_ignore|mathjax_ignore",
    },
    # The package ships the STIX web fonts only (as Jupyter configures MathJax): use those.
    "HTML-CSS": {"availableFonts": [], "preferredFont": None, "webFont": "STIX-Web", "imageFont": None},
}
myst_update_mathjax = False  # MyST's own setting is for MathJax 3
html_show_sourcelink = False
smartquotes_action = "qe"  # curly quotes, but --options keep their two hyphens


def copy_mathjax(app, exception) -> None:
    """Put MathJax (from the ``jupyter-server-mathjax`` package) under ``_static/mathjax``."""
    if exception is None and app.builder.format == "html":
        source = Path(jupyter_server_mathjax.__file__).parent / "static"
        shutil.copytree(source, Path(app.outdir) / "_static" / MATHJAX_DIR, dirs_exist_ok=True)


#: What must carry a docstring (its own or the one it overrides): everything autodoc documents but
#: module-level constants and fields.
MUST_BE_DOCUMENTED = {"function", "method", "class", "exception", "property", "module"}


def refuse_undocumented(app, what, name, obj, options, lines) -> None:
    """Warn (so fail the strict build) for a public object in the reference without a docstring."""
    if what in MUST_BE_DOCUMENTED and not any(line.strip() for line in lines):
        logger.warning("%s %s has no docstring; every public %s needs one", what, name, what, type="digitnet")


SINGLE_BACKQUOTES = re.compile(r"(?<!`)`([^`]+)`(?!`)")


def escape_help_text(app, ctx, lines) -> None:
    """Help texts are written for the terminal: ``*`` is a star, not emphasis, and `digitnet train`
    in single backquotes is code, not a title."""
    lines[:] = [SINGLE_BACKQUOTES.sub(r"``\1``", line.replace("*", "\\*")) for line in lines]


def skip_foreign_members(app, what, name, obj, skip, options) -> bool | None:
    """Leave out what another library put on our classes (scikit-learn's generated
    ``set_*_request`` methods): the reference documents digitnet's own code."""
    module = getattr(obj, "__module__", None)
    if what in ("class", "exception") and callable(obj) and module and not module.startswith("digitnet"):
        return True
    return None


def _find(target: str, module: str | None) -> object | None:
    """The object ``target`` names, dotted from a module or relative to ``module``; None if none."""
    for base in (target, f"{module}.{target}" if module else None):
        parts = base.split(".") if base else []
        for cut in range(len(parts), 0, -1):
            try:
                obj: object = importlib.import_module(".".join(parts[:cut]))
            except ImportError:
                continue
            try:
                for part in parts[cut:]:
                    obj = getattr(obj, part)
            except AttributeError:
                break
            return obj
    return None


def resolve_reexports(app, env, node, contnode):
    """Resolve ``digitnet.nn.Network`` (a re-export) or ``Network.load`` (imported into the current
    module) to where the object is documented, ``digitnet.nn.network.Network``."""
    if node.get("refdomain") != "py":
        return None
    obj = _find(node["reftarget"], node.get("py:module"))
    if obj is None:
        return None
    domain = env.get_domain("py")
    if hasattr(obj, "__qualname__") and getattr(obj, "__module__", "").startswith("digitnet"):
        candidates = [f"{obj.__module__}.{obj.__qualname__}"]
    else:  # a constant: whichever documented digitnet name holds this very object
        last = node["reftarget"].rsplit(".", 1)[-1]
        candidates = [name for name in domain.objects if name.rsplit(".", 1)[-1] == last and _find(name, None) is obj]
    for name in candidates:
        if name != node["reftarget"] and name in domain.objects:
            return domain.resolve_xref(env, node["refdoc"], app.builder, node["reftype"], name, node, contnode)
    return None


def setup(app) -> None:
    app.connect("autodoc-process-docstring", refuse_undocumented, priority=100)  # before numpydoc
    app.connect("sphinx-click-process-options", escape_help_text)
    app.connect("sphinx-click-process-arguments", escape_help_text)
    app.connect("sphinx-click-process-description", escape_help_text)
    app.connect("missing-reference", resolve_reexports)
    app.connect("autodoc-skip-member", skip_foreign_members)
    app.connect("build-finished", copy_mathjax)
