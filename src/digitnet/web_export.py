"""Export a network as a static web page that reads drawn digits in the browser, without a server.

``digitnet export --format web --out DIR`` writes a folder that any static file server can serve
(``python -m http.server`` in it will do; browsers do not run WebAssembly from ``file://`` pages):

* ``model.onnx``: the network, as :func:`digitnet.onnx_export.export_onnx` writes it;
* ``index.html``, ``app.js`` (from ``digitnet/web/standalone``) and ``style.css`` (the served
  page's own): the draw-a-digit page, which prepares the drawing MNIST-style in JavaScript;
* ``ort.wasm.bundle.min.mjs`` and ``ort-wasm-simd-threaded.wasm``: onnxruntime-web's CPU
  (WebAssembly) backend, the only files of it the page loads;
* ``model.json``: what the page needs to know (class names, input size) and where the model came
  from (its file name and sha256).

onnxruntime-web comes from the npm registry: the first export runs ``npm install`` of the pinned
:data:`ORT_WEB_VERSION` into digitnet's cache directory, and every export checks the two files
against the sha256 recorded here before copying them, so the page always runs the release it was
tested with. The folder is built beside ``DIR`` and renamed into place; an earlier export there is
moved aside first and put back if the rename fails, so ``DIR`` never holds half a page.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from importlib import resources
from pathlib import Path

from . import __version__
from .data.cache import default_cache_dir, sha256_of_file
from .data.leftovers import temporary_path_for
from .errors import DigitnetError
from .nn import Network
from .onnx_export import INPUT_NAME, OUTPUT_NAME, export_onnx, image_side

__all__ = [
    "ORT_WEB_FILES",
    "ORT_WEB_VERSION",
    "WEB_FORMAT",
    "WebExportError",
    "check_destination",
    "export_web",
    "onnxruntime_web",
    "onnxruntime_web_cached",
]

#: The onnxruntime-web release the page bundles (it runs ONNX opset 17 on its WebAssembly backend).
ORT_WEB_VERSION = "1.31.1"
#: The files of that release the page loads, with their sha256: the ES module with the WebAssembly
#: glue built in, and the one WebAssembly binary of the CPU backend (SIMD; threads stay unused).
ORT_WEB_FILES = {
    "ort.wasm.bundle.min.mjs": "51bd7168175767324ab0acfcfc4ca94a096a3826e3ebac9ccc4f195eb865f8dd",
    "ort-wasm-simd-threaded.wasm": "4b884c203b0fa48d057be3332c65513ff85aa3c5bddd6946acc0fab7ecda001d",
}
#: The page's files, and the folder of ``digitnet/web`` each comes from (the served page's look).
PAGE_FILES = {"index.html": "standalone", "app.js": "standalone", "pad.js": "static", "style.css": "static"}
#: ``format`` in model.json: how a folder is recognised as an earlier export that may be replaced.
WEB_FORMAT = "digitnet-web"
#: The longest an ``npm install`` may take, in seconds.
NPM_TIMEOUT_S = 600


class WebExportError(DigitnetError):
    """The page cannot be exported: npm missing or failing, or a destination that is not ours."""


def onnxruntime_web_cached(cache_dir: str | os.PathLike[str] | None = None) -> bool:
    """Whether :func:`onnxruntime_web` will find the pinned release in the cache (no npm needed)."""
    root = default_cache_dir() if cache_dir is None else Path(cache_dir).expanduser()
    return _holds_release(_dist(root / f"onnxruntime-web-{ORT_WEB_VERSION}"))


def onnxruntime_web(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The folder holding :data:`ORT_WEB_FILES`, installed with npm into the cache the first time.

    Parameters
    ----------
    cache_dir : path-like, optional
        digitnet's cache root; ``None`` means :func:`~digitnet.data.cache.default_cache_dir`.

    Returns
    -------
    pathlib.Path
        ``<cache>/onnxruntime-web-<version>/node_modules/onnxruntime-web/dist``, its files checked.

    Raises
    ------
    WebExportError
        If npm is missing, the install fails, or the installed files are not the pinned release's.
    """
    root = default_cache_dir() if cache_dir is None else Path(cache_dir).expanduser()
    folder = root / f"onnxruntime-web-{ORT_WEB_VERSION}"
    if _holds_release(_dist(folder)):
        return _dist(folder)
    npm = shutil.which("npm")
    if npm is None:
        raise WebExportError(
            f"Exporting the web page needs npm to fetch onnxruntime-web {ORT_WEB_VERSION} once, and npm is not "
            "installed; install Node.js with npm (for example apt-get install npm) and export again."
        )
    staging = temporary_path_for(folder)
    try:
        _make_folder(staging, "digitnet's cache folder (DIGITNET_CACHE_DIR chooses another)")
        _npm_install(npm, staging)
        if not _holds_release(_dist(staging)):
            raise WebExportError(
                f"npm installed onnxruntime-web {ORT_WEB_VERSION}, but its files differ from the release digitnet "
                "was tested with (their sha256 differ); nothing was exported."
            )
        if folder.exists():  # a damaged copy from before
            shutil.rmtree(folder)
        try:
            os.replace(staging, folder)
        except OSError:
            if not _holds_release(_dist(folder)):  # another export installed it meanwhile, or not
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return _dist(folder)


def export_web(
    network: Network,
    out: str | os.PathLike[str],
    *,
    model_name: str,
    model_sha256: str,
    cache_dir: str | os.PathLike[str] | None = None,
) -> Path:
    """Write the static draw-a-digit page for ``network`` into the folder ``out``, atomically.

    Parameters
    ----------
    network : Network
        The network the page runs.
    out : path-like
        The folder to write. It may be missing, empty or an earlier export (which is replaced).
    model_name, model_sha256 : str
        The model file's name and sha256, recorded in ``model.json``.
    cache_dir : path-like, optional
        Where onnxruntime-web is kept (see :func:`onnxruntime_web`).

    Returns
    -------
    pathlib.Path
        ``out``.

    Raises
    ------
    WebExportError
        If ``out`` holds something other than an earlier export, or onnxruntime-web cannot be had;
        nothing is written then.
    OnnxExportError
        As :func:`~digitnet.onnx_export.export_onnx`; nothing is written then.
    """
    out = check_destination(out)
    dist = onnxruntime_web(cache_dir)
    staging = temporary_path_for(out)
    try:
        _make_folder(staging, "the folder that holds --out")
        export_onnx(network, staging / "model.onnx")
        page = resources.files("digitnet") / "web"
        for name, folder in PAGE_FILES.items():
            (staging / name).write_bytes((page / folder / name).read_bytes())
        for name in ORT_WEB_FILES:
            shutil.copyfile(dist / name, staging / name)
        description = _description(network, model_name, model_sha256)
        (staging / "model.json").write_text(json.dumps(description, indent=2) + "\n", encoding="utf-8")
        _move_into_place(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out


def _make_folder(folder: Path, what: str) -> None:
    try:
        folder.mkdir(parents=True)
    except OSError as error:
        raise WebExportError(f"Cannot write to {what}, {folder.parent}: {error.strerror}.") from None


def _dist(folder: Path) -> Path:
    return folder / "node_modules" / "onnxruntime-web" / "dist"


def _holds_release(dist: Path) -> bool:
    """Whether ``dist`` holds the pinned release's files, byte for byte."""
    return all((dist / name).is_file() and sha256_of_file(dist / name) == sha for name, sha in ORT_WEB_FILES.items())


def _npm_install(npm: str, prefix: Path) -> None:
    """``npm install`` the pinned onnxruntime-web into ``prefix`` (no scripts run, nothing saved)."""
    command = [npm, "install", "--prefix", str(prefix), "--no-save", "--no-package-lock", "--ignore-scripts"]
    command += ["--no-audit", "--no-fund", "--loglevel=error", f"onnxruntime-web@{ORT_WEB_VERSION}"]
    try:
        done = subprocess.run(
            command, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=NPM_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise WebExportError(f"npm install onnxruntime-web@{ORT_WEB_VERSION} did not finish ({error}).") from None
    if done.returncode != 0:
        lines = [line.strip() for line in (done.stderr or done.stdout).splitlines() if line.strip()]
        why = lines[0] if lines else f"exit status {done.returncode}"
        raise WebExportError(
            f"npm install onnxruntime-web@{ORT_WEB_VERSION} failed ({why}); check that the npm registry can be "
            "reached (npm ping) and export again."
        )


def check_destination(out: str | os.PathLike[str]) -> Path:
    """``out`` as an absolute path, if it may receive the page: missing, empty, or an earlier export.

    Raises
    ------
    WebExportError
        For a file or symbolic link, a folder holding anything but an earlier export, the current
        folder or a root (which cannot be replaced whole), or a missing parent folder.
    """
    given = Path(out)
    out = Path(os.path.abspath(given))
    if out.is_symlink():
        raise WebExportError(f"{given} is a symbolic link; give --out a new folder for the web page.")
    if out.exists() and not out.is_dir():
        raise WebExportError(f"{given} exists and is not a folder; give --out a new folder for the web page.")
    if out == Path.cwd() or out.parent == out:
        raise WebExportError(
            f"{given} is the current folder or a root, which the export cannot replace; give --out a new folder."
        )
    if out.is_dir() and any(out.iterdir()) and not _is_export(out):
        raise WebExportError(
            f"{given} holds files that are not from a digitnet web export; give --out a new or empty folder."
        )
    if not out.parent.is_dir():
        raise WebExportError(
            f"The folder {out.parent} does not exist or is not a folder; create it first, or give --out another folder."
        )
    return out


def _is_export(folder: Path) -> bool:
    """Whether ``folder`` holds an earlier export and nothing else (so replacing it loses nothing)."""
    if not {path.name for path in folder.iterdir()} <= {*PAGE_FILES, *ORT_WEB_FILES, "model.onnx", "model.json"}:
        return False
    try:
        return json.loads((folder / "model.json").read_text(encoding="utf-8")).get("format") == WEB_FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def _move_into_place(staging: Path, out: Path) -> None:
    """Rename the finished folder to ``out``; an earlier export there is moved aside, then removed.

    An existing empty folder is replaced by the new one (its owner and mode are the new folder's).
    If the rename fails or is interrupted, the earlier export is put back.
    """
    old = temporary_path_for(out)
    try:
        if out.is_dir() and any(out.iterdir()):
            os.replace(out, old)
        os.replace(staging, out)  # onto a missing or empty folder
    except BaseException as error:
        if old.exists() and not out.exists():
            os.replace(old, out)  # put the earlier export back
        if isinstance(error, OSError):
            raise WebExportError(f"Cannot put the web page in place at {out}: {error.strerror or error}.") from None
        raise
    shutil.rmtree(old, ignore_errors=True)


def _description(network: Network, model_name: str, model_sha256: str) -> dict[str, object]:
    """model.json: what the page reads (classes, input) and what a person may want to know."""
    height, width = image_side(network.input_shape)
    return {
        "format": WEB_FORMAT,
        "format_version": 1,
        "model": model_name,
        "model_sha256": model_sha256,
        "architecture": network.describe(),
        "parameters": network.num_parameters(),
        "class_names": list(network.class_names),
        "input": {"name": INPUT_NAME, "height": height, "width": width},
        "output": OUTPUT_NAME,
        "onnxruntime_web": ORT_WEB_VERSION,
        "digitnet": __version__,
    }
