"""Your own images: a folder with one subfolder per class, read as a :class:`Dataset`.

The layout is the one torchvision's ``ImageFolder`` and Keras' ``image_dataset_from_directory``
read::

    my-digits/
      0/  a.png  b.png ...
      1/  c.png ...
      ...

Class names are the subfolders' names, in sorted order (so label ``k`` is the ``k``-th name). Each
image is prepared exactly as ``digitnet predict`` prepares one (:func:`digitnet.preprocess.preprocess_file`:
the digit found on the page, cropped, scaled into 20x20 and centred by mass in 28x28), so a model
trained on the folder sees at training time what it will see when it reads a new file. Images of
any size, colour or polarity may be mixed. A file that cannot be read, or that the preparation
refuses (blank, several marks, cut off), is skipped, and one warning line counts them and names a
few. The images are split into training and test sets per class (stratified) with a fixed seed, so
the test set is the same whatever the run's seed; the validation images are later held out of the
training set by :func:`digitnet.experiment.run`, as for any dataset.

Preparing an image takes milliseconds (the page analysis behind ``predict``), so the images are
prepared in worker processes, one per core, when there are enough of them to be worth it, and the
prepared digits are cached (keyed by each file's sha256), so that loading the folder again, to
train another model on it, takes a moment.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import time
import warnings
import zipfile
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from digitnet.data.cache import atomic_write_bytes, dataset_cache_dir, sha256_of_file
from digitnet.data.datasets import Dataset
from digitnet.errors import DataError, ImageError

__all__ = ["IMAGE_SUFFIXES", "TEST_FRACTION", "is_image_folder", "load_image_folder"]

#: Files with these suffixes (any case) are read as images; other files are left alone.
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"})
#: Share of each class's images kept for the test set.
TEST_FRACTION = 0.2
#: Seeds the train/test split: fixed, so the test set never depends on the run's seed.
SPLIT_SEED = 0
#: Longest class name a model file accepts (:data:`digitnet.nn.modelfile.MAX_NAME_LENGTH`).
MAX_CLASS_NAME = 64
#: Labels are uint8, as in every digitnet dataset.
MAX_CLASSES = 256
#: Below this many images a pool of worker processes costs more than it saves.
PARALLEL_FROM = 64
#: The cache of prepared images lives in this folder of the dataset cache.
CACHE_FOLDER = "image-folders"
#: Unreadable files named in the warning line.
NAMED_FAILURES = 3


def is_image_folder(name: str | os.PathLike[str]) -> bool:
    """Whether a ``--dataset`` value names a folder on disk rather than a catalogue entry."""
    return Path(name).is_dir()


def load_image_folder(
    path: str | os.PathLike[str],
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    workers: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> Dataset:
    """Read ``path/<class>/<image>`` files into a :class:`Dataset` of MNIST-like 28x28 digits.

    Parameters
    ----------
    path : path-like
        The folder holding one subfolder per class (at least two). Hidden entries are ignored.
    cache_dir : path-like, optional
        Where prepared images are kept, so that loading the folder again takes a moment
        (default: digitnet's user cache, as for the catalogue's datasets).
    workers : int, optional
        Processes preparing images; default: one per core this process may use.
    progress : callable, optional
        Receives one-line messages: how many images were read, and the warning about skipped
        files. Without it, the warning is issued with :func:`warnings.warn`.

    Returns
    -------
    Dataset
        ``name`` is the folder's absolute path, ``class_names`` the subfolders' names; uint8 images
        ``(N, 28, 28)`` split per class into training and test sets (a fifth for testing).

    Raises
    ------
    DataError
        If ``path`` is not a folder, holds fewer than two or more than 256 class folders, a class
        name is too long for a model file, or a class has fewer than two readable images.
    """
    started = time.perf_counter()
    root = Path(path).expanduser().resolve()
    files = _class_files(root)
    images, labels, failures = _prepare_all(root, files, workers, cache_dir)
    _check_every_class_has_two(root, files, labels)
    if failures:
        _warn(_failure_message(root, failures, len(labels) + len(failures)), progress)
    train_index, test_index = _stratified_split(labels)
    name = str(root) if len(str(root)) <= 256 else root.name[:256]
    dataset = Dataset(
        name=name,
        class_names=tuple(files),
        train_images=images[train_index],
        train_labels=labels[train_index],
        test_images=images[test_index],
        test_labels=labels[test_index],
    )
    if progress is not None:
        progress(
            f"Read {len(labels):,} images of {len(files)} classes from {root} in "
            f"{time.perf_counter() - started:.1f} s: {len(train_index):,} to train on, {len(test_index):,} to test."
        )
    return dataset


def _class_files(root: Path) -> dict[str, list[Path]]:
    """The class folders' names (sorted) and each one's image files (sorted by name)."""
    if not root.is_dir():
        what = "does not exist" if not root.exists() else "is not a folder"
        raise DataError(f"{root} {what}; give a folder that holds one subfolder of images per class.")
    classes = sorted(entry.name for entry in _entries(root) if entry.is_dir())
    if not classes:
        raise DataError(
            f"{root} has no class folders; put each class's images in a subfolder named after the class, "
            f"such as {root / '0'}/*.png and {root / '1'}/*.png."
        )
    if len(classes) == 1:
        raise DataError(
            f"{root} has only one class folder ({classes[0]}), and a classifier needs at least two; "
            "add a subfolder of images for every other class."
        )
    if len(classes) > MAX_CLASSES:
        raise DataError(
            f"{root} has {len(classes)} class folders, more than the {MAX_CLASSES} a digitnet dataset can label; "
            "check that it is the folder of class folders, not a folder above it."
        )
    too_long = [name for name in classes if len(name) > MAX_CLASS_NAME]
    if too_long:
        raise DataError(
            f"The class folder name {too_long[0][:40]}... in {root} is longer than {MAX_CLASS_NAME} characters, "
            "more than a model file holds; rename it."
        )
    return {
        name: sorted(
            Path(entry.path) for entry in _entries(root / name) if Path(entry.name).suffix.lower() in IMAGE_SUFFIXES
        )
        for name in classes
    }


def _entries(folder: Path) -> list[os.DirEntry[str]]:
    """The folder's entries, hidden ones (``.DS_Store``, ``.ipynb_checkpoints``) left out."""
    try:
        with os.scandir(folder) as entries:
            return [entry for entry in entries if not entry.name.startswith(".")]
    except OSError as error:
        raise DataError(
            f"The folder {folder} cannot be read ({error.strerror or error}); check its permissions."
        ) from None


def prepare_image(path: str) -> tuple[np.ndarray | None, str | None]:
    """One file prepared as ``digitnet predict`` prepares it, as uint8 28x28, or why it cannot be.

    Runs in worker processes, so it takes and returns plain picklable values.
    """
    from digitnet.preprocess import preprocess_file

    try:
        digit = preprocess_file(path)
    except ImageError as error:
        return None, str(error)
    return np.rint(digit * 255).astype(np.uint8), None


def _prepare_all(
    root: Path, files: dict[str, list[Path]], workers: int | None, cache_dir: str | os.PathLike[str] | None
) -> tuple[np.ndarray, np.ndarray, list[tuple[Path, str]]]:
    """Every file prepared, from the cache or afresh: the images, their labels, and the failures."""
    paths = [path for names in files.values() for path in names]
    label_of = np.repeat(np.arange(len(files), dtype=np.uint8), [len(names) for names in files.values()])
    digests = [_digest(path) for path in paths]
    cache_file = _cache_file(root, cache_dir)
    cached = _read_cache(cache_file)
    todo = [i for i, digest in enumerate(digests) if isinstance(digest, bytes) and digest not in cached]
    fresh = dict(zip(todo, _prepare(paths, todo, workers)))
    images: list[np.ndarray] = []
    kept: list[int] = []
    kept_digests: list[bytes] = []
    failures: list[tuple[Path, str]] = []
    for i, digest in enumerate(digests):
        if isinstance(digest, str):
            failures.append((paths[i], digest))
            continue
        image, problem = (cached[digest], None) if digest in cached else fresh[i]
        if image is None:
            failures.append((paths[i], problem or "refused"))
            continue
        images.append(image)
        kept.append(i)
        kept_digests.append(digest)
    if fresh:
        _write_cache(cache_file, dict(zip(kept_digests, images)))
    stacked = np.stack(images) if images else np.zeros((0, 28, 28), np.uint8)
    return stacked, label_of[kept], failures


def _digest(path: Path) -> bytes | str:
    """The file's sha256 (its key in the cache), or why it cannot be read."""
    try:
        if not stat.S_ISREG(path.stat().st_mode):  # opening a named pipe would wait forever
            return "is not a regular file"
        return bytes.fromhex(sha256_of_file(path))
    except OSError as error:
        return f"cannot be read ({error.strerror or error})"


def _prepare(paths: list[Path], todo: list[int], workers: int | None) -> list[tuple[np.ndarray | None, str | None]]:
    """:func:`prepare_image` for ``paths[i]``, ``i`` in ``todo``: in worker processes when worth it."""
    names = [str(paths[i]) for i in todo]
    workers = workers or _cpu_count()
    if workers == 1 or len(names) < PARALLEL_FROM:
        return [prepare_image(name) for name in names]
    import digitnet.preprocess  # noqa: F401  # imported once here, inherited by forked workers

    chunk = max(1, len(names) // (workers * 8))
    with ProcessPoolExecutor(max_workers=workers, initializer=_one_thread_each) as pool:
        return list(pool.map(prepare_image, names, chunksize=chunk))


def _one_thread_each() -> None:
    # Each worker gets one core: BLAS threads of their own would only fight over the same cores.
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)


# -- the cache of prepared images ---------------------------------------------------------------
# Preparing an image takes milliseconds; reading it back takes microseconds. The cache maps each
# file's sha256 to its prepared digit, one file per folder, and is thrown away whenever anything
# that could change the preparation changes (digitnet's preprocessing code, Pillow, SciPy, NumPy).


def _cache_file(root: Path, cache_dir: str | os.PathLike[str] | None) -> Path:
    key = hashlib.sha256(str(root).encode("utf-8", "surrogateescape")).hexdigest()[:24]
    return dataset_cache_dir(cache_dir, CACHE_FOLDER) / f"{key}.npz"


def _fingerprint() -> str:
    import PIL
    import scipy

    from digitnet import preprocess

    source = Path(preprocess.__file__).read_bytes()
    versions = f"{PIL.__version__} {scipy.__version__} {np.__version__}".encode()
    return hashlib.sha256(source + versions).hexdigest()


def _read_cache(path: Path) -> dict[bytes, np.ndarray]:
    """The cached digits by file digest; empty when there is no cache, or it is stale or damaged."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            if set(archive.files) != {"fingerprint", "digests", "images"}:
                return {}
            if str(archive["fingerprint"]) != _fingerprint():
                return {}
            digests, images = archive["digests"], archive["images"]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return {}
    if digests.dtype != np.uint8 or images.dtype != np.uint8:
        return {}
    if digests.ndim != 2 or digests.shape[1] != 32 or images.shape != (len(digests), 28, 28):
        return {}
    return {bytes(digest): image for digest, image in zip(digests, images)}


def _write_cache(path: Path, digits: dict[bytes, np.ndarray]) -> None:
    buffer = io.BytesIO()
    digests = np.frombuffer(b"".join(digits), dtype=np.uint8).reshape(len(digits), 32)
    images = np.stack(list(digits.values())) if digits else np.zeros((0, 28, 28), np.uint8)
    np.savez(buffer, fingerprint=np.array(_fingerprint()), digests=digests, images=images)
    try:
        atomic_write_bytes(path, buffer.getbuffer())
    except OSError:
        pass  # a cache that cannot be written only makes the next load slower


def _check_every_class_has_two(root: Path, files: dict[str, list[Path]], labels: np.ndarray) -> None:
    counts = np.bincount(labels, minlength=len(files))
    for name, count in zip(files, counts):
        if count < 2:
            found = len(files[name])
            detail = "holds no image files" if found == 0 else f"has {count} readable image(s) of {found}"
            raise DataError(
                f"The class folder {root / name} {detail}; every class needs at least two images "
                f"(one to train on, one to test), as PNG, JPEG, BMP, GIF, TIFF or WebP files."
            )


def _failure_message(root: Path, failures: list[tuple[Path, str]], total: int) -> str:
    named = ", ".join(str(path.relative_to(root)) for path, _ in failures[:NAMED_FAILURES])
    more = f" and {len(failures) - NAMED_FAILURES} more" if len(failures) > NAMED_FAILURES else ""
    return (
        f"Skipped {len(failures)} of {total} images that could not be read or hold no single digit: "
        f"{named}{more}; `digitnet predict` on one of them says why."
    )


def _warn(message: str, progress: Callable[[str], None] | None) -> None:
    if progress is not None:
        progress(message)
    else:
        warnings.warn(message, stacklevel=3)


def _stratified_split(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the training and test images: per class, a fifth (at least one) for testing,
    chosen with :data:`SPLIT_SEED`; each set in its original order."""
    rng = np.random.default_rng(SPLIT_SEED)
    test: list[np.ndarray] = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        count = max(1, round(len(members) * TEST_FRACTION))
        test.append(rng.choice(members, size=count, replace=False))
    test_index = np.sort(np.concatenate(test))
    train_index = np.setdiff1d(np.arange(len(labels)), test_index)
    return train_index, test_index


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
