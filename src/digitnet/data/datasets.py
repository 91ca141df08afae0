"""The catalogue: which datasets exist, their files, checksums, classes and where to find them.

Everything here is a fact about the data, not code that fetches it; ``docs/DATA.md`` describes
each dataset, file and source in prose. :func:`digitnet.data.gather.default_sources` turns these
facts into sources to try, and :func:`digitnet.data.load_dataset` assembles the verified files
into a :class:`Dataset`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

import numpy as np

from digitnet.errors import DataError

__all__ = ["DATASETS", "Dataset", "DatasetSpec", "FileSpec", "ROLES", "get_spec"]

#: The four files of an IDX dataset, in the order they are listed and fetched.
ROLES = ("train_images", "train_labels", "test_images", "test_labels")


@dataclass(frozen=True, eq=False)
class Dataset:
    """Images and labels of one dataset, split into training and test sets.

    The arrays are read-only views so that a loaded dataset cannot be changed by accident;
    take a copy (``np.array(...)`` or fancy indexing) to modify images.

    Attributes
    ----------
    name : str
        Catalogue name, for example ``"mnist"``.
    class_names : tuple of str
        Name of each label value, indexed by label.
    train_images, test_images : numpy.ndarray
        ``uint8`` arrays of shape ``(N, H, W)``, 0 = background, 255 = full ink; or float32 or
        float64 arrays on the [0, 1] scale (the scikit-learn estimator's input).
    train_labels, test_labels : numpy.ndarray
        ``uint8`` arrays of shape ``(N,)`` with values in ``range(num_classes)``.
    """

    name: str
    class_names: tuple[str, ...]
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray

    def __post_init__(self) -> None:
        # Cheap structural checks: a Dataset that exists is one the rest of the code can trust.
        for split in ("train", "test"):
            images = getattr(self, f"{split}_images")
            labels = getattr(self, f"{split}_labels")
            if images.ndim != 3 or not (images.dtype == np.uint8 or images.dtype in (np.float32, np.float64)):
                raise ValueError(
                    f"{split}_images must be uint8 or float (N, H, W) arrays, got {images.dtype} {images.shape}"
                )
            if labels.dtype != np.uint8 or labels.shape != images.shape[:1]:
                raise ValueError(
                    f"{split}_labels must be uint8 of shape {images.shape[:1]}, got {labels.dtype} {labels.shape}"
                )
            # Read-only views: the caller's arrays keep their flags, the dataset's cannot be written.
            for attribute, array in ((f"{split}_images", images), (f"{split}_labels", labels)):
                view = array.view()
                view.setflags(write=False)
                object.__setattr__(self, attribute, view)
        if self.train_images.shape[1:] != self.test_images.shape[1:]:
            raise ValueError("train and test images must have the same height and width")

    @property
    def image_shape(self) -> tuple[int, int]:
        """Height and width of every image, for example ``(28, 28)``."""
        return self.train_images.shape[1], self.train_images.shape[2]

    @property
    def num_classes(self) -> int:
        """Number of classes, which is ``len(class_names)``."""
        return len(self.class_names)

    def __repr__(self) -> str:
        height, width = self.image_shape
        return (
            f"Dataset(name={self.name!r}, train={len(self.train_labels)}, test={len(self.test_labels)}, "
            f"image_shape=({height}, {width}), num_classes={self.num_classes})"
        )


@dataclass(frozen=True)
class FileSpec:
    """One file of an IDX dataset, as it must be once uncompressed.

    Attributes
    ----------
    role : str
        One of :data:`ROLES`.
    name : str
        Canonical file name without ``.gz``, for example ``"train-images-idx3-ubyte"``.
    size : int
        Uncompressed size in bytes.
    sha256 : str
        SHA-256 of the uncompressed bytes (the ``.gz`` bytes vary between re-compressions).
    """

    role: str
    name: str
    size: int
    sha256: str


@dataclass(frozen=True)
class DatasetSpec:
    """Everything the catalogue knows about one dataset.

    Attributes
    ----------
    name : str
        Catalogue name.
    title : str
        One-line human description.
    class_names : tuple of str
        Label names, indexed by label value.
    image_shape : tuple of int
        ``(H, W)`` of every image.
    train_count, test_count : int
        Number of images in each split.
    files : tuple of FileSpec
        The IDX files, one per role in :data:`ROLES`; empty for embedded datasets.
    mirrors : tuple of str
        Base URLs serving ``<file name>.gz``, tried in order.
    system_dirs : tuple of pathlib.Path
        Folders where an operating-system package installs the files.
    system_hint : str
        How to install that package, shown when the folder is missing.
    package_index : bool
        Whether the MNIST wheel on the Python package index can supply the files.
    openml_name : str or None
        OpenML dataset name, used only on explicit opt-in.
    embedded : callable or None
        For datasets shipped inside a library: a function returning the :class:`Dataset`.
    """

    name: str
    title: str
    class_names: tuple[str, ...]
    image_shape: tuple[int, int]
    train_count: int
    test_count: int
    files: tuple[FileSpec, ...] = ()
    mirrors: tuple[str, ...] = ()
    system_dirs: tuple[Path, ...] = ()
    system_hint: str = ""
    package_index: bool = False
    openml_name: str | None = None
    embedded: Callable[[], Dataset] | None = field(default=None, compare=False)

    def file(self, role: str) -> FileSpec:
        """Return the file that plays ``role`` (one of :data:`ROLES`)."""
        for spec in self.files:
            if spec.role == role:
                return spec
        raise KeyError(f"{self.name} has no {role} file")


def get_spec(name: str) -> DatasetSpec:
    """Return the catalogue entry called ``name``.

    Raises
    ------
    DataError
        When no dataset has that name; the message lists the names that exist.
    """
    try:
        return DATASETS[name]
    except KeyError:
        raise DataError(
            f"Unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}, or give the path of a folder "
            "that holds one subfolder of images per class."
        ) from None


DIGITS_TEST_COUNT = 360


def load_digits_dataset() -> Dataset:
    """Load scikit-learn's embedded 8x8 digits as a :class:`Dataset` (no network, no cache).

    Pixel values 0..16 are scaled to 0..255 with rounding. The split is fixed, so runs are
    comparable: the last 360 images are the test set, the first 1,437 the training set.

    Raises
    ------
    DataError
        When scikit-learn is not installed.
    """
    try:
        from sklearn.datasets import load_digits  # optional dependency, imported only when used
    except ImportError as exc:
        raise DataError(
            "The 'digits' dataset comes with scikit-learn, which is not installed; "
            "install it with: pip install 'digitnet[sklearn]'."
        ) from exc
    bunch = load_digits()
    images = np.rint(bunch.images * (255 / 16)).astype(np.uint8)
    labels = bunch.target.astype(np.uint8)
    split = len(labels) - DIGITS_TEST_COUNT
    return Dataset(
        name="digits",
        class_names=tuple(str(digit) for digit in range(10)),
        train_images=images[:split],
        train_labels=labels[:split],
        test_images=images[split:],
        test_labels=labels[split:],
    )


def _idx_files(sizes_and_hashes: dict[str, tuple[int, str]]) -> tuple[FileSpec, ...]:
    """Build the four FileSpecs of an MNIST-format dataset from ``{name: (size, sha256)}``."""
    names = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
    return tuple(
        FileSpec(role=role, name=name, size=sizes_and_hashes[name][0], sha256=sizes_and_hashes[name][1])
        for role, name in zip(ROLES, names, strict=True)
    )


# Sizes and SHA-256 are those of the uncompressed files (docs/DATA.md, "MNIST").
_MNIST = DatasetSpec(
    name="mnist",
    title="MNIST handwritten digits (LeCun, Cortes and Burges)",
    class_names=tuple(str(digit) for digit in range(10)),
    image_shape=(28, 28),
    train_count=60_000,
    test_count=10_000,
    files=_idx_files(
        {
            "train-images-idx3-ubyte": (47_040_016, "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"),
            "train-labels-idx1-ubyte": (60_008, "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"),
            "t10k-images-idx3-ubyte": (7_840_016, "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"),
            "t10k-labels-idx1-ubyte": (10_008, "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"),
        }
    ),
    # The original site no longer serves the files reliably; these mirrors do.
    mirrors=(
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
    ),
    package_index=True,
    openml_name="mnist_784",
)

# Checksums match the files of Debian's dataset-fashion-mnist package (docs/DATA.md, "Fashion-MNIST").
_FASHION_MNIST = DatasetSpec(
    name="fashion-mnist",
    title="Fashion-MNIST clothing images (Zalando Research)",
    class_names=(
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ),
    image_shape=(28, 28),
    train_count=60_000,
    test_count=10_000,
    files=_idx_files(
        {
            "train-images-idx3-ubyte": (47_040_016, "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888"),
            "train-labels-idx1-ubyte": (60_008, "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9"),
            "t10k-images-idx3-ubyte": (7_840_016, "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b"),
            "t10k-labels-idx1-ubyte": (10_008, "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"),
        }
    ),
    # Plain HTTP is acceptable here only because every file is checked against its sha256.
    mirrors=(
        "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    ),
    system_dirs=(Path("/usr/share/datasets/fashion-mnist"),),
    system_hint="on Debian or Ubuntu: sudo apt-get install dataset-fashion-mnist",
)

_DIGITS = DatasetSpec(
    name="digits",
    title="scikit-learn's 8x8 handwritten digits (embedded, always offline)",
    class_names=tuple(str(digit) for digit in range(10)),
    image_shape=(8, 8),
    train_count=1797 - DIGITS_TEST_COUNT,
    test_count=DIGITS_TEST_COUNT,
    embedded=load_digits_dataset,
)

#: Every dataset digitnet knows, by name; the first is the default.
DATASETS: Mapping[str, DatasetSpec] = MappingProxyType({spec.name: spec for spec in (_MNIST, _FASHION_MNIST, _DIGITS)})
