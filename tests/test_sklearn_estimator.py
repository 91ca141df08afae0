"""digitnet.sklearn.DigitnetClassifier: scikit-learn's own checks, and the estimator in its tools."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer
from sklearn.utils.estimator_checks import parametrize_with_checks

from digitnet.data import load_dataset
from digitnet.nn import Network
from digitnet.sklearn import DigitnetClassifier

#: Small enough that the ~55 checks take seconds; enough epochs to fit the checks' blobs.
#: One BLAS thread each: on a loaded machine, threads waiting for cores slow tiny products tenfold.
SMALL_MLP = DigitnetClassifier(hidden=(16,), epochs=30, lr=0.01, batch_size=32, random_state=0, threads=1)
DEFAULT_MLP = DigitnetClassifier(random_state=0, threads=1)
SMALL_CNN = DigitnetClassifier(model="cnn", hidden=(8,), epochs=2, random_state=0, threads=1)

#: The checks fit data of 1 to 5 features; the CNN refuses anything smaller than 4x4-pixel images
#: with a ValueError that says so (test_the_cnn_refuses_images_too_small_to_pool_in_one_sentence).
#: Every check below fits such data, so each fails on that refusal and on nothing else.
CNN_NEEDS_IMAGES = "the check fits 1 to 5 features; model='cnn' needs images of at least 4x4 pixels"
CNN_EXPECTED_FAILURES = {
    name: CNN_NEEDS_IMAGES
    for name in (
        "check_fit_score_takes_y",
        "check_estimators_overwrite_params",
        "check_dont_overwrite_parameters",
        "check_estimators_fit_returns_self",
        "check_readonly_memmap_input",
        "check_n_features_in_after_fitting",
        "check_positive_only_tag_during_fit",
        "check_estimators_dtypes",
        "check_dtype_object",
        "check_pipeline_consistency",
        "check_estimators_nan_inf",
        "check_estimators_pickle",
        "check_f_contiguous_array_estimator",
        "check_classifier_data_not_an_array",
        "check_classifiers_one_label",
        "check_classifiers_classes",
        "check_estimators_partial_fit_n_features",
        "check_classifiers_train",
        "check_supervised_y_2d",
        "check_methods_sample_order_invariance",
        "check_methods_subset_invariance",
        "check_fit2d_1sample",
        "check_fit2d_1feature",
        "check_dict_unchanged",
        "check_fit_idempotent",
        "check_fit_check_is_fitted",
        "check_n_features_in",
        "check_fit2d_predict1d",
    )
}


def expected_failures(estimator: DigitnetClassifier) -> dict[str, str]:
    if estimator.model == "cnn":
        return CNN_EXPECTED_FAILURES
    if estimator.epochs is None:
        # The recipe is tuned for 60,000 images: on the check's 300 rows its 8 epochs are 24 Adam
        # steps down a cosine schedule, short of the 83% training accuracy the check asks for
        # (SMALL_MLP, 30 epochs, passes it).
        return {"check_classifiers_train": "the default recipe's 24 steps on 300 rows under-train"}
    return {}


@parametrize_with_checks(
    [SMALL_MLP, DEFAULT_MLP, SMALL_CNN], expected_failed_checks=expected_failures, xfail_strict=True
)
def test_scikit_learn_estimator_checks(estimator, check):
    check(estimator)


@pytest.fixture(scope="module")
def digits28():
    """400 of the 8x8 digits blown up to MNIST's 28x28 (each pixel 3x3, a 2-pixel margin), in [0, 1]."""
    digits = load_dataset("digits")
    small = digits.train_images[:400].astype(np.float64) / 255
    images = np.pad(np.kron(small, np.ones((3, 3))), ((0, 0), (2, 2), (2, 2)))
    return images, digits.train_labels[:400].astype(np.int64)


def quick(**params) -> DigitnetClassifier:
    settings = {"hidden": (32,), "epochs": 10, "batch_size": 32, "random_state": 0, "threads": 1}
    return DigitnetClassifier(**{**settings, **params})


def test_a_three_fold_grid_search_over_two_learning_rates_runs_without_a_warning(digits28):
    images, labels = digits28
    search = GridSearchCV(quick(), {"lr": [1e-3, 3e-3]}, cv=3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        search.fit(images, labels)
    scores = search.cv_results_["mean_test_score"]
    assert len(scores) == 2 and np.isfinite(scores).all()
    assert search.best_params_["lr"] in (1e-3, 3e-3)
    assert search.score(images, labels) > 0.8


def test_28x28_images_and_their_flattened_784_rows_train_the_same_network(digits28):
    images, labels = digits28
    square, flat = quick().fit(images, labels), quick().fit(images.reshape(len(images), 784), labels)
    assert square.image_shape_ == flat.image_shape_ == (28, 28) and square.n_features_in_ == 784
    for name, value in square.network_.state().items():
        assert value.tobytes() == flat.network_.state()[name].tobytes(), name
    np.testing.assert_array_equal(square.predict(images.reshape(len(images), 784)), flat.predict(images))


def test_classes_are_taken_from_y_whatever_their_values(digits28):
    images, labels = digits28
    names = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"])
    clf = quick().fit(images, names[labels])
    assert list(clf.classes_) == sorted(names)
    predicted = clf.predict(images)
    assert set(predicted) <= set(names) and np.mean(predicted == names[labels]) > 0.8
    proba = clf.predict_proba(images[:5])
    np.testing.assert_array_equal(clf.classes_[proba.argmax(axis=1)], predicted[:5])


def to_unit_scale(pixels: np.ndarray) -> np.ndarray:
    return pixels / 255


def test_it_works_inside_a_pipeline_under_cross_validation(digits28):
    images, labels = digits28
    # digits in 0..255 would be the caller's scale: the pipeline brings them to [0, 1] first
    pipeline = make_pipeline(FunctionTransformer(to_unit_scale), quick())
    scores = cross_val_score(pipeline, images.reshape(len(images), -1) * 255, labels, cv=3)
    assert scores.shape == (3,) and scores.min() > 0.6


def test_the_cnn_learns_28x28_images(digits28):
    images, labels = digits28
    cnn = DigitnetClassifier(model="cnn", hidden=(64,), epochs=6, batch_size=16, random_state=0, threads=1)
    assert cnn.fit(images[:200], labels[:200]).score(images[200:], labels[200:]) > 0.6  # guessing: 0.1


def test_the_cnn_refuses_images_too_small_to_pool_in_one_sentence():
    with pytest.raises(ValueError, match=r"model='cnn' reads images of at least 4x4 pixels.*1x5.*model='mlp'"):
        DigitnetClassifier(model="cnn").fit(np.zeros((6, 5)), [0, 1] * 3)


def test_the_same_random_state_gives_the_same_network_and_another_does_not(digits28):
    images, labels = digits28
    first, again, other = quick().fit(images, labels), quick().fit(images, labels), quick(random_state=1)
    other.fit(images, labels)
    assert first.network_.state()["layer1.W"].tobytes() == again.network_.state()["layer1.W"].tobytes()
    assert first.network_.state()["layer1.W"].tobytes() != other.network_.state()["layer1.W"].tobytes()


def test_partial_fit_twice_continues_exactly_like_a_two_epoch_fit_at_a_constant_rate(digits28):
    images, labels = digits28
    stepwise = quick(epochs=None)
    stepwise.partial_fit(images, labels, classes=np.arange(10))
    stepwise.partial_fit(images, labels)
    whole = quick(epochs=2, schedule="constant").fit(images, labels)
    assert [record.epoch for record in stepwise.history_.epochs] == [1, 2]
    for name, value in whole.network_.state().items():
        assert value.tobytes() == stepwise.network_.state()[name].tobytes(), name


def test_partial_fit_goes_on_after_a_fit_that_stopped_early(digits28):
    images, labels = digits28
    clf = quick(epochs=40, validation_fraction=0.25, patience=1).fit(images, labels)
    assert clf.history_.stopped_early
    epochs = len(clf.history_.epochs)
    clf.partial_fit(images, labels)
    assert [record.epoch for record in clf.history_.epochs][-2:] == [epochs, epochs + 1]


def test_partial_fit_needs_the_classes_first_and_refuses_labels_outside_them(digits28):
    images, labels = digits28
    with pytest.raises(ValueError, match="classes must be passed on the first call"):
        quick().partial_fit(images, labels)
    clf = quick().partial_fit(images[labels < 5], labels[labels < 5], classes=np.arange(5))
    with pytest.raises(ValueError, match=r"labels \[5, 6, 7, 8, 9\] that are not among the classes"):
        clf.partial_fit(images, labels)


def test_the_fitted_network_saves_as_a_model_digitnet_reads(digits28, tmp_path):
    images, labels = digits28
    clf = quick().fit(images, labels)
    clf.network_.save(tmp_path / "model.npz")
    loaded = Network.load(tmp_path / "model.npz")
    np.testing.assert_array_equal(clf.classes_[loaded.predict(images)], clf.predict(images))
