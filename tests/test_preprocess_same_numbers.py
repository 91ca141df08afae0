"""The preprocessing's shortcuts give exactly the numbers of the straightforward computation.

Preparing a folder of small PNGs spent most of its time in NumPy's per-call overhead, so
:mod:`digitnet.preprocess` computes medians, percentiles and histograms of small arrays from one
sort, finds the strokes' ridge with array slices, takes even paper's light as its level without a
fit, and skips a second paper pass that would find the same paper. None of that may change a
prepared digit: these tests hold each shortcut to NumPy's and SciPy's own results, and whole
images, clean and photo-like, to what the straightforward code makes of them.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter
from scipy import ndimage

from digitnet import preprocess
from digitnet.preprocess import preprocess_file

hypothesis = pytest.importorskip("hypothesis", reason="property tests need hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

SETTINGS = settings(max_examples=200, deadline=None)

#: Small float32 arrays with ties, wide and narrow spreads (what contrast maps hold).
float32_arrays = hnp.arrays(
    np.float32,
    st.integers(1, 600),
    elements=st.one_of(
        st.floats(-1, 2, width=32),
        st.sampled_from([0.0, 0.25, 0.5, 1.0]),
        st.floats(0, 2**-10, width=32),
    ),
)


@SETTINGS
@given(float32_arrays)
def test_the_median_is_numpys_median_in_the_same_precision(values):
    ours, numpys = preprocess._median(values), np.median(values)
    assert ours == numpys and ours.dtype == numpys.dtype
    wide = values.astype(np.float64)
    assert preprocess._median(wide) == np.median(wide)


@SETTINGS
@given(float32_arrays, st.floats(0, 100))
def test_one_percentile_is_numpys_in_the_same_precision(values, percent):
    ours, numpys = preprocess._percentile(values, percent), np.percentile(values, percent)
    assert ours == numpys and ours.dtype == numpys.dtype


@SETTINGS
@given(float32_arrays)
def test_several_percentiles_from_the_sorted_values_are_numpys(values):
    percents = (0.5, 50, 99.5)
    assert preprocess._percentiles(np.sort(values), percents) == list(np.percentile(values, list(percents)))


@SETTINGS
@given(float32_arrays, st.floats(0, 1), st.floats(0, 1), st.sampled_from([64, 256]))
def test_the_histogram_has_numpys_edges_and_counts(values, start, end, bins):
    ordered = np.sort(values)
    low = float(np.percentile(values, 100 * min(start, end)))
    high = max(float(np.percentile(values, 100 * max(start, end))), low + 1e-3)
    counts, edges = preprocess._histogram(ordered, bins, low, high)
    numpy_counts, numpy_edges = np.histogram(values, bins=bins, range=(low, high))
    assert np.array_equal(counts, numpy_counts)
    assert np.array_equal(edges, numpy_edges) and edges.dtype == numpy_edges.dtype


def scipy_bar_width(mask: np.ndarray) -> float:
    """The stroke width as first written: SciPy's distance transform and maximum filter."""
    if not mask.any():
        return 0.0
    distance = ndimage.distance_transform_edt(np.pad(mask, 1))
    ridge = (distance > 0) & (distance >= ndimage.maximum_filter(distance, size=3))
    return 2.0 * float(distance[ridge].mean()) - 1.0


def scipy_ridge_width(distance: np.ndarray) -> float:
    """The ridge of a padded mask's distance transform as first written: SciPy's maximum filter."""
    ridge = (distance > 0) & (distance >= ndimage.maximum_filter(distance, size=3))
    return 2.0 * float(distance[ridge].mean()) - 1.0


@SETTINGS
@given(st.integers(1, 60), st.integers(1, 60), st.integers(0, 2**32 - 1), st.integers(0, 6))
def test_the_stroke_width_is_the_one_scipys_maximum_filter_gives(height, width, seed, grow):
    rng = np.random.default_rng(seed)
    mask = rng.random((height, width)) < rng.uniform(0.02, 0.5)
    if grow:
        mask = ndimage.binary_dilation(mask, iterations=grow)
    assert preprocess._bar_width(mask) == scipy_bar_width(mask)


def fitted_light(small: np.ndarray) -> tuple[np.ndarray, float, float]:
    """The light always fitted by least squares, as first written (no shortcut for even paper)."""
    on_border, design = preprocess._border_design(*small.shape)
    values = small[on_border].astype(np.float64)
    c = np.array([np.median(values), 0, 0, 0, 0, 0])
    for _ in range(3):
        misfit = np.abs(design @ c - values)
        use = misfit <= max(3 * 1.4826 * float(np.median(misfit)), 0.01)
        c = np.linalg.lstsq(design[use], values[use], rcond=None)[0]
    fitted = design @ c
    return c, float(fitted.min()), float(fitted.max())


def fitted_surface(light: tuple[np.ndarray, float, float], shape: tuple[int, int], margin: int) -> np.ndarray:
    """The light's surface by its formula, as first written."""
    c, low, high = light
    rows, cols = shape
    y = (np.arange(-margin, rows + margin) / max(rows - 1, 1) * 2.0 - 1.0)[:, np.newaxis]
    x = (np.arange(-margin, cols + margin) / max(cols - 1, 1) * 2.0 - 1.0)[np.newaxis, :]
    surface = c[0] + c[1] * x + c[2] * y + c[3] * x * x + c[4] * y * y + c[5] * x * y
    if margin:
        surface = np.clip(surface, low, high)
    return surface.astype(np.float32)


@pytest.mark.parametrize("level", [0, 1, 128, 200, 254, 255])
def test_even_paper_has_the_light_surface_a_least_squares_fit_gives(level):
    small = np.full((40, 30), level / 255, dtype=np.float32)
    small[10:30, 8:22] = 0.3  # the ink: inside, off the border
    light = preprocess._light_fit(small)
    for margin in (0, 7):
        assert np.array_equal(
            preprocess._light_surface(light, small.shape, margin),
            fitted_surface(fitted_light(small), small.shape, margin),
        )


def test_uneven_light_is_still_fitted_not_taken_as_even():
    rows, cols = np.mgrid[0:40, 0:30]
    small = (0.6 + 0.01 * rows + 0.004 * cols).astype(np.float32)  # a gradient across the page
    c, low, high = preprocess._light_fit(small)
    assert np.abs(c[1:]).max() > 0.05 and high - low > 0.3
    assert np.allclose(c, fitted_light(small)[0])


# --- whole images: the prepared digit is the one the straightforward code makes ------------------


def straightforward(monkeypatch: pytest.MonkeyPatch) -> None:
    """Put NumPy's and SciPy's own statistics and the always-fitted light back in place."""
    monkeypatch.setattr(preprocess, "_median", np.median)
    monkeypatch.setattr(preprocess, "_percentile", np.percentile)
    monkeypatch.setattr(preprocess, "_percentiles", lambda ordered, percents: list(np.percentile(ordered, percents)))
    monkeypatch.setattr(
        preprocess, "_histogram", lambda ordered, bins, low, high: np.histogram(ordered, bins=bins, range=(low, high))
    )
    monkeypatch.setattr(preprocess, "_bar_width", scipy_bar_width)
    monkeypatch.setattr(preprocess, "_ridge_width", scipy_ridge_width)
    monkeypatch.setattr(preprocess, "_light_fit", fitted_light)
    monkeypatch.setattr(preprocess, "_light_surface", fitted_surface)


def png(image: Image.Image, fmt: str = "PNG", **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def scanned(side: int, width: int, seed: int, blur: float) -> bytes:
    """A clean scan: a random digit-like polyline, dark on white paper, anti-aliased."""
    rng = np.random.default_rng(seed)
    big = Image.new("L", (4 * side, 4 * side), 255)
    points = [tuple(float(v) for v in rng.uniform(0.6 * side, 3.4 * side, 2)) for _ in range(4)]
    ImageDraw.Draw(big).line(points, fill=0, width=4 * width, joint="curve")
    return png(big.filter(ImageFilter.GaussianBlur(blur)).resize((side, side), Image.Resampling.BOX))


def photographed(seed: int) -> bytes:
    """A photo-like page: blue pen on cream paper, a light gradient, sensor noise, a JPEG."""
    rng = np.random.default_rng(seed)
    height, width = 180, 240
    ink = np.zeros((height, width), dtype=np.float32)
    pen = Image.new("L", (width, height), 0)
    ImageDraw.Draw(pen).line([(90, 40), (150, 40), (110, 140)], fill=255, width=7)
    ink = np.asarray(pen.filter(ImageFilter.GaussianBlur(1)), dtype=np.float32)[..., None] / 255
    paper, blue = np.array([235, 228, 205], np.float32), np.array([30, 45, 140], np.float32)
    page = paper * (1 - ink) + blue * ink
    page *= np.linspace(1.0, 0.75, width, dtype=np.float32)[None, :, None]
    page += rng.normal(0, 4, page.shape).astype(np.float32)
    return png(Image.fromarray(np.clip(page, 0, 255).astype(np.uint8)), "JPEG", quality=75)


IMAGES = {
    "a 28x28 scan": scanned(28, 2, seed=1, blur=2),
    "a 28x28 hairline scan": scanned(28, 1, seed=2, blur=0),
    "a 64x64 marker scan": scanned(64, 10, seed=3, blur=3),
    "a 64x64 scan": scanned(64, 4, seed=4, blur=4),
    "white on black": png(Image.eval(Image.open(io.BytesIO(scanned(28, 2, seed=5, blur=2))), lambda v: 255 - v)),
    "a photo": photographed(6),
}


@pytest.mark.parametrize("name", IMAGES)
def test_the_prepared_digit_is_exactly_the_straightforward_codes(name, monkeypatch):
    fast = preprocess_file(IMAGES[name])
    straightforward(monkeypatch)
    assert np.array_equal(fast, preprocess_file(IMAGES[name]))
