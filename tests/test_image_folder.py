"""Your own images: a folder of class folders becomes a dataset, prepared as `digitnet predict` prepares files."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import digitnet.data.folder as folder_module
from digitnet.cli import main
from digitnet.data import load_dataset, load_image_folder
from digitnet.errors import DataError
from digitnet.experiment import ExperimentConfig, run
from digitnet.nn import Network
from digitnet.preprocess import preprocess_file

_spec = importlib.util.spec_from_file_location(
    "make_digit_folder", Path(__file__).parents[1] / "examples" / "make_digit_folder.py"
)
assert _spec is not None and _spec.loader is not None
make_digit_folder = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make_digit_folder)

CLASSES = {"one": 1, "seven": 7, "zero": 0}
PER_CLASS = 10


@pytest.fixture(scope="module")
def digit_folder(tmp_path_factory) -> Path:
    """The README's example folder, smaller: three named classes of ten 32x32 PNGs each."""
    return make_digit_folder.write_digit_folder(tmp_path_factory.mktemp("images") / "my-digits", PER_CLASS, CLASSES)


@pytest.fixture
def copy_of(digit_folder, tmp_path):
    """A private copy of the example folder, to damage."""
    return Path(shutil.copytree(digit_folder, tmp_path / "copy"))


@pytest.fixture
def cache(tmp_path) -> Path:
    return tmp_path / "cache"


def as_uint8(digit: np.ndarray) -> np.ndarray:
    return np.rint(digit * 255).astype(np.uint8)


def sorted_images(images: np.ndarray) -> list[bytes]:
    return sorted(image.tobytes() for image in images)


def test_class_names_are_the_sorted_folder_names_and_every_image_is_prepared_as_predict_prepares_it(
    digit_folder, cache
):
    data = load_image_folder(digit_folder, cache_dir=cache)
    assert data.class_names == ("one", "seven", "zero")
    assert data.image_shape == (28, 28)
    for label, name in enumerate(data.class_names):
        expected = [as_uint8(preprocess_file(path)) for path in sorted((digit_folder / name).iterdir())]
        got = np.concatenate(
            [data.train_images[data.train_labels == label], data.test_images[data.test_labels == label]]
        )
        assert sorted_images(got) == sorted_images(np.stack(expected))


def test_each_class_keeps_a_fifth_for_testing_with_the_same_split_every_time(digit_folder, tmp_path):
    first = load_image_folder(digit_folder, cache_dir=tmp_path / "one")
    second = load_image_folder(digit_folder, cache_dir=tmp_path / "two")
    assert np.bincount(first.test_labels).tolist() == [PER_CLASS // 5] * len(CLASSES)
    assert np.bincount(first.train_labels).tolist() == [PER_CLASS - PER_CLASS // 5] * len(CLASSES)
    np.testing.assert_array_equal(first.test_images, second.test_images)
    np.testing.assert_array_equal(first.train_labels, second.train_labels)
    # no image is both trained on and tested on
    assert not set(sorted_images(first.test_images)) & set(sorted_images(first.train_images))


def test_unreadable_and_refused_files_are_skipped_and_counted_in_one_warning(copy_of, cache):
    (copy_of / "one" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    Image.new("L", (32, 32), 255).save(copy_of / "seven" / "blank.png")
    os.mkfifo(copy_of / "zero" / "pipe.png")  # opening it would wait forever
    (copy_of / "zero" / "notes.txt").write_text("not an image, and not taken for one")
    messages: list[str] = []
    data = load_image_folder(copy_of, cache_dir=cache, progress=messages.append)
    assert len(data.train_labels) + len(data.test_labels) == len(CLASSES) * PER_CLASS
    (warning,) = [message for message in messages if message.startswith("Skipped")]
    assert warning.startswith(f"Skipped 3 of {len(CLASSES) * PER_CLASS + 3} images")
    for name in ("one/broken.png", "seven/blank.png", "zero/pipe.png"):
        assert name in warning


def test_without_a_progress_callback_the_skipped_files_are_a_warning(copy_of, cache):
    (copy_of / "one" / "broken.png").write_bytes(b"not an image")
    with pytest.warns(UserWarning, match=r"^Skipped 1 of 31 images .*one/broken\.png"):
        load_image_folder(copy_of, cache_dir=cache)


def test_images_of_mixed_sizes_and_colours_are_all_prepared_to_28x28(copy_of, cache):
    for number, path in enumerate(sorted((copy_of / "one").iterdir())[:4]):
        image = Image.open(path).convert("RGB")
        size = [(100, 100), (57, 90), (20, 20), (300, 180)][number]
        image.resize(size, Image.Resampling.BILINEAR).save(path.with_suffix(".jpg"), quality=95)
        path.unlink()
    data = load_image_folder(copy_of, cache_dir=cache)
    assert len(data.train_labels) + len(data.test_labels) == len(CLASSES) * PER_CLASS
    assert data.train_images.shape[1:] == (28, 28)


def test_a_folder_without_class_folders_is_refused_in_one_sentence(tmp_path):
    Image.new("L", (28, 28)).save(tmp_path / "a.png")
    with pytest.raises(DataError, match=r"has no class folders; put each class's images in a subfolder") as error:
        load_image_folder(tmp_path, cache_dir=tmp_path / ".cache")
    assert str(error.value).count(". ") == 0


def test_a_folder_with_one_class_is_refused(copy_of, cache):
    shutil.rmtree(copy_of / "one")
    shutil.rmtree(copy_of / "seven")
    with pytest.raises(DataError, match=r"has only one class folder \(zero\), and a classifier needs at least two"):
        load_image_folder(copy_of, cache_dir=cache)


def test_a_class_with_fewer_than_two_readable_images_is_refused_by_name(copy_of, cache):
    for path in sorted((copy_of / "seven").iterdir())[1:]:
        path.write_bytes(b"damaged")
    with pytest.raises(DataError, match=r"seven has 1 readable image\(s\) of 10; every class needs at least two"):
        load_image_folder(copy_of, cache_dir=cache)


def test_class_names_are_held_to_the_model_files_limit():
    from digitnet.nn.modelfile import MAX_NAME_LENGTH

    assert folder_module.MAX_CLASS_NAME == MAX_NAME_LENGTH


def test_a_class_name_too_long_for_a_model_file_is_refused_before_any_image_is_read(copy_of, cache):
    (copy_of / "zero").rename(copy_of / ("z" * 65))
    with pytest.raises(DataError, match=r"is longer than 64 characters, more than a model file holds; rename it"):
        load_image_folder(copy_of, cache_dir=cache)


def test_more_classes_than_a_uint8_label_holds_are_refused(tmp_path):
    for number in range(257):
        (tmp_path / f"class{number}").mkdir()
    with pytest.raises(DataError, match=r"has 257 class folders, more than the 256 a digitnet dataset can label"):
        load_image_folder(tmp_path, cache_dir=tmp_path / ".cache")


def test_a_missing_folder_is_refused(tmp_path):
    with pytest.raises(DataError, match=r"does not exist; give a folder"):
        load_image_folder(tmp_path / "nowhere", cache_dir=tmp_path)


def test_loading_again_takes_the_prepared_digits_from_the_cache_and_prepares_only_changed_files(
    copy_of, cache, monkeypatch
):
    first = load_image_folder(copy_of, cache_dir=cache)
    prepared: list[str] = []
    real = folder_module.prepare_image
    monkeypatch.setattr(folder_module, "prepare_image", lambda path: prepared.append(path) or real(path))
    again = load_image_folder(copy_of, cache_dir=cache)
    assert prepared == []
    np.testing.assert_array_equal(again.train_images, first.train_images)
    changed = copy_of / "zero" / "0.png"
    Image.open(changed).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(changed)  # new content
    load_image_folder(copy_of, cache_dir=cache)
    assert prepared == [str(changed)]


def test_a_damaged_cache_is_ignored(copy_of, cache):
    expected = load_image_folder(copy_of, cache_dir=cache)
    (cache_file,) = (cache / folder_module.CACHE_FOLDER).iterdir()
    cache_file.write_bytes(cache_file.read_bytes()[:300])
    np.testing.assert_array_equal(load_image_folder(copy_of, cache_dir=cache).test_images, expected.test_images)


def test_preparing_in_worker_processes_gives_the_same_dataset(digit_folder, tmp_path, monkeypatch):
    serial = load_image_folder(digit_folder, cache_dir=tmp_path / "serial", workers=1)
    monkeypatch.setattr(folder_module, "PARALLEL_FROM", 2)
    parallel = load_image_folder(digit_folder, cache_dir=tmp_path / "parallel", workers=2)
    np.testing.assert_array_equal(parallel.train_images, serial.train_images)
    np.testing.assert_array_equal(parallel.test_labels, serial.test_labels)


def test_the_experiment_entry_point_and_load_dataset_take_a_folder_path(digit_folder, cache, monkeypatch):
    monkeypatch.setenv("DIGITNET_CACHE_DIR", str(cache))
    assert load_dataset(str(digit_folder)).class_names == ("one", "seven", "zero")
    result = run(ExperimentConfig(dataset=str(digit_folder), recipe={"epochs": 1}))
    assert result.network.class_names == ["one", "seven", "zero"]
    assert result.network.metadata["dataset"] == str(digit_folder.resolve())


def test_train_on_a_folder_then_predict_names_the_folder_classes_and_evaluate_finds_the_folder(
    digit_folder, cache, tmp_path, monkeypatch
):
    monkeypatch.setenv("DIGITNET_CACHE_DIR", str(cache))
    model = tmp_path / "model.npz"
    runner = CliRunner()
    result = runner.invoke(
        main, ["train", "--dataset", str(digit_folder), "--epochs", "3", "--keep-failed", "--out", str(model)]
    )
    assert result.exit_code == 0, result.output
    assert Network.load(model).class_names == ["one", "seven", "zero"]
    result = runner.invoke(main, ["predict", str(model), str(digit_folder / "seven" / "0.png"), "--json"])
    assert result.exit_code == 0, result.output
    (answer,) = json.loads(result.stdout)
    assert answer["label"] in CLASSES and answer["label"] == ["one", "seven", "zero"][answer["digit"]]
    result = runner.invoke(main, ["evaluate", str(model), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["n"] == len(CLASSES) * PER_CLASS // 5


def test_train_refuses_a_dataset_that_is_neither_a_name_nor_a_folder(tmp_path):
    result = CliRunner().invoke(main, ["train", "--dataset", str(tmp_path / "nowhere"), "--out", "m.npz"])
    assert result.exit_code == 2
    assert "is neither a dataset (digits, fashion-mnist, mnist) nor a folder" in result.stderr


def test_train_refuses_a_folder_with_one_class_in_one_line_and_writes_nothing(copy_of, cache, tmp_path, monkeypatch):
    monkeypatch.setenv("DIGITNET_CACHE_DIR", str(cache))
    shutil.rmtree(copy_of / "one")
    shutil.rmtree(copy_of / "seven")
    model = tmp_path / "model.npz"
    result = CliRunner().invoke(main, ["train", "--dataset", str(copy_of), "--out", str(model)])
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert "only one class folder (zero)" in result.stderr
    assert not model.exists()
