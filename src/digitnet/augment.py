"""Random distortions of training images, applied on the fly to every mini-batch.

A distorted digit is still the same digit, so each epoch can show the network new examples for
free. Two kinds of distortion are combined, as in Simard, Steinkraus & Platt (2003):

* an **affine** map per image: rotation, isotropic scaling, horizontal shear and a shift;
* an **elastic** field per image: a smooth random displacement of every pixel, like the wobble of
  a hand-written stroke.

Both are expressed the same way: each output pixel ``p`` reads the input at the point
``A (p - c) + c + t + d(p)`` (``c`` the image centre, ``A`` the 2x2 matrix, ``t`` the shift,
``d`` the elastic displacement). Points outside the image read the background (the normalised
value of a black pixel). The input is read in one of two ways:

* **nearest**: the value of the pixel nearest to the point. One gather per output pixel instead
  of four, so it costs about a third as much, and for the affine-only "light" strength it trains
  about as well: the differences in validation and test accuracy are within the spread between
  seeds (BENCHMARKS.md has the side-by-side runs);
* **bilinear**: a weighted mean of the four nearest pixels. Elastic fields move pixels by
  fractions of a pixel, which only interpolation can show, so the elastic strengths use it.

A third, optional stage imitates other pens and other scanners, for a reader meant to read more
than MNIST's writers: each image may get **thicker or thinner strokes** (grey dilation or erosion,
scipy.ndimage), be **scanned at a low resolution** (averaged down to ``k x k`` pixels and
interpolated back up, as a coarse scanner or a small drawing does) and **blurred** (a Gaussian of
random width). Those two are linear maps per image, ``M @ X @ M.T`` with ``M`` one of a few
precomputed matrices whose rows sum to one, so a blank background stays blank. Last, some images
get **pixel noise** (Gaussian, kept between no ink and full ink), as a grainy sensor or paper adds.

Everything is vectorised over the batch: the sample points of all images form one array, and the
pixels are fetched with one flat-index gather (``np.take``) per neighbour. The elastic fields are
drawn on a coarse grid and smoothed up to full size by two small matrix products
(``U @ Z @ U.T``, with ``U`` a fixed Gaussian interpolation matrix), which is both the textbook
recipe (Gaussian-smoothed noise) and far cheaper than smoothing full-size noise.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import ndimage

INTERPOLATIONS = ("bilinear", "nearest")


@dataclass(frozen=True)
class Strength:
    """How far the random distortions go; every parameter is drawn uniformly in ``[-max, max]``.

    Attributes
    ----------
    shift : float
        Largest shift in pixels, along each axis.
    rotation : float
        Largest rotation in degrees.
    scale : float
        Largest relative change of size (0.1 means 90 % to 110 %).
    shear : float
        Largest horizontal shear factor (``x += shear * y``).
    elastic : float
        Root-mean-square elastic displacement in pixels (0 turns elastic distortion off).
    elastic_grid : int
        Side of the coarse grid of random displacements; fewer points give smoother fields.
    interpolation : str
        How a distorted image reads its input: ``"bilinear"`` or ``"nearest"`` (see the module notes).
    stretch : float
        Largest change of the width-to-height ratio, as a factor ``exp(u)``, ``|u| <= stretch``:
        writers and scanners that fit digits to a box do not all keep the aspect ratio.
    stroke : float
        Probability that an image's strokes are made one step thicker, and (separately) thinner.
    low_res : tuple of int
        ``(smallest, largest)`` side in pixels that an image may be scanned at; ``()`` for never.
    low_res_chance : float
        Probability that an image is scanned at a low resolution.
    blur : float
        Largest Gaussian blur, in pixels (standard deviation).
    noise : float
        Largest standard deviation of Gaussian pixel noise, as a share of full ink (a noisy sensor,
        grainy paper); each image gets a level drawn uniformly in ``[0, noise]``.
    noise_chance : float
        Probability that an image is made noisy.
    conventions : float
        Share of the training 1s and 7s rewritten once, before training, as many writers outside
        MNIST write them (a long-flagged 1, a crossed 7: :mod:`digitnet.conventions`).
    """

    shift: float = 0.0
    rotation: float = 0.0
    scale: float = 0.0
    shear: float = 0.0
    elastic: float = 0.0
    elastic_grid: int = 4
    interpolation: str = "bilinear"
    stretch: float = 0.0
    stroke: float = 0.0
    low_res: tuple[int, ...] = ()
    low_res_chance: float = 0.0
    blur: float = 0.0
    noise: float = 0.0
    noise_chance: float = 0.0
    conventions: float = 0.0

    def __post_init__(self) -> None:
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"unknown interpolation {self.interpolation!r}; choose one of {', '.join(INTERPOLATIONS)}")

    def to_dict(self) -> dict[str, Any]:
        """The settings as a JSON-serialisable dict (as saved with the model)."""
        return {**asdict(self), "low_res": list(self.low_res)}

    @property
    def degrades(self) -> bool:
        """Whether the pen-and-scanner stage runs (see the module notes)."""
        return bool(self.stroke or self.low_res_chance or self.blur or self.noise_chance)


#: Named strengths for ``digitnet train --augment NAME``.
STRENGTHS: dict[str, Strength] = {
    "light": Strength(shift=2.0, rotation=8.0, scale=0.08, shear=0.1, interpolation="nearest"),
    "medium": Strength(shift=2.5, rotation=12.0, scale=0.12, shear=0.2, elastic=1.0),
    "strong": Strength(shift=3.0, rotation=15.0, scale=0.15, shear=0.3, elastic=1.5),
    # Other writers, pens and scanners: slant, width, stroke weight, coarse scans, blur, noise, and a third
    # of the 1s and 7s written in other conventions (a share chosen a priori, not tuned).
    "reader": Strength(
        shift=2.0,
        rotation=10.0,
        scale=0.1,
        shear=0.3,
        elastic=0.75,
        stretch=0.25,
        stroke=0.15,
        low_res=(7, 14),
        low_res_chance=0.25,
        blur=0.8,
        noise=0.3,
        noise_chance=0.25,
        conventions=1 / 3,
    ),
}

#: Padding of background around each image before sampling. Two pixels make the clamped sample
#: points (everything outside the image) read pure background from both bilinear neighbours
#: (nearest sampling needs only one).
_PAD = 2


def gaussian_upsampling_matrix(size: int, grid: int) -> np.ndarray:
    """A ``(size, grid)`` matrix that smoothly interpolates ``grid`` control values to ``size`` pixels.

    Row ``y`` holds Gaussian weights of pixel ``y``'s distance to the evenly spaced control points
    (width equal to their spacing), scaled to unit length. So for independent standard normal
    control values ``Z``, every pixel of ``U @ Z @ U.T`` is again standard normal, while nearby
    pixels move together.
    """
    centres = np.linspace(-0.5, size - 0.5, grid)
    spacing = centres[1] - centres[0] if grid > 1 else float(size)
    distance = np.arange(size)[:, None] - centres[None, :]
    weights = np.exp(-0.5 * (distance / spacing) ** 2)
    return weights / np.linalg.norm(weights, axis=1, keepdims=True)


def resample_matrix(size: int, side: int) -> np.ndarray:
    """``(size, size)``: average ``size`` pixels down to ``side`` cells, then interpolate back up.

    Each cell averages the pixels it covers (fractions at its edges); the way back is linear
    interpolation between cell centres. Every row sums to one.
    """
    edges = np.linspace(0, size, side + 1)
    pixel_lo, pixel_hi = np.arange(size), np.arange(size) + 1.0
    overlap = np.clip(np.minimum(edges[1:, None], pixel_hi) - np.maximum(edges[:-1, None], pixel_lo), 0, None)
    down = overlap / overlap.sum(axis=1, keepdims=True)  # (side, size)
    centres = (edges[:-1] + edges[1:]) / 2
    up = np.zeros((size, side))
    position = np.clip(np.interp(np.arange(size) + 0.5, centres, np.arange(side)), 0, side - 1)
    left = np.minimum(np.floor(position).astype(int), side - 2) if side > 1 else np.zeros(size, dtype=int)
    fraction = position - left
    up[np.arange(size), left] = 1 - fraction
    if side > 1:
        up[np.arange(size), left + 1] += fraction
    return up @ down


def gaussian_blur_matrix(size: int, sigma: float) -> np.ndarray:
    """``(size, size)``: a Gaussian blur of width ``sigma`` pixels, rows summing to one (identity at 0)."""
    if sigma <= 0:
        return np.eye(size)
    distance = np.arange(size)[:, None] - np.arange(size)[None, :]
    weights = np.exp(-0.5 * (distance / sigma) ** 2)
    return weights / weights.sum(axis=1, keepdims=True)


#: The footprint of one step of stroke thickening: the pixel and its four neighbours.
_CROSS = np.array([[[[0, 1, 0], [1, 1, 1], [0, 1, 0]]]], dtype=bool)


class Augmenter:
    """Callable ``augment(batch, rng)`` for :func:`digitnet.train.train`.

    Parameters
    ----------
    strength : Strength or str
        A :class:`Strength` or the name of one in :data:`STRENGTHS`.
    background : float, optional
        Value of an empty (black) pixel in the batch's units: for normalised network inputs,
        ``(0 - mean) / std``.
    full_ink : float, optional
        Value of a pixel of full ink in the same units, ``(1 - mean) / std`` (sets the scale of
        pixel noise).

    Examples
    --------
    >>> augment = Augmenter("light", background=(0 - network.mean) / network.std)  # doctest: +SKIP
    >>> train(network, x, y, config, rng, augment=augment)                         # doctest: +SKIP
    """

    def __init__(self, strength: Strength | str = "light", background: float = 0.0, full_ink: float = 1.0) -> None:
        if isinstance(strength, str):
            if strength not in STRENGTHS:
                raise ValueError(f"unknown augmentation {strength!r}; choose one of {', '.join(STRENGTHS)}")
            strength = STRENGTHS[strength]
        self.strength = strength
        self.background = float(background)
        self.full_ink = float(full_ink)
        self._grids: dict[tuple[int, int], np.ndarray] = {}
        self._upsampling: dict[tuple[int, int], np.ndarray] = {}
        self._workspaces: dict[tuple, _Workspace] = {}
        self._scan_tables: dict[tuple, np.ndarray] = {}

    def __repr__(self) -> str:
        return f"Augmenter({self.strength}, background={self.background:g})"

    # -- random parameters --------------------------------------------------------------------

    def random_affine(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Draw ``n`` random sampling matrices ``(n, 2, 2)`` and shifts ``(n, 2)``, in (x, y) order.

        The matrix is ``R(angle) @ [[1, shear], [0, 1]] / scale``: it maps an output pixel (relative
        to the centre) to the input point it shows, so ``scale > 1`` enlarges the digit.
        """
        s = self.strength
        angle = np.deg2rad(rng.uniform(-s.rotation, s.rotation, n))
        scale = 1 + rng.uniform(-s.scale, s.scale, n)
        shear = rng.uniform(-s.shear, s.shear, n)
        shift = rng.uniform(-s.shift, s.shift, (n, 2))
        cos, sin = np.cos(angle) / scale, np.sin(angle) / scale
        matrices = np.stack(
            [np.stack([cos, cos * shear - sin], axis=-1), np.stack([sin, sin * shear + cos], axis=-1)], axis=1
        )
        if s.stretch:  # read x from a narrower (wider) span: the digit gets wider (narrower)
            matrices[:, :, 0] *= np.exp(-rng.uniform(-s.stretch, s.stretch, n))[:, None]
        return matrices, shift

    def random_elastic(self, n: int, height: int, width: int, rng: np.random.Generator) -> np.ndarray | None:
        """Draw ``n`` smooth displacement fields ``(n, 2, height, width)`` (x then y), or ``None`` if off."""
        s = self.strength
        if s.elastic <= 0:
            return None
        up_y, up_x = self._upsampling_matrix(height, s.elastic_grid), self._upsampling_matrix(width, s.elastic_grid)
        coarse = rng.standard_normal((n, 2, s.elastic_grid, s.elastic_grid), dtype=np.float32)
        return s.elastic * (up_y @ coarse @ up_x.T)

    def _upsampling_matrix(self, size: int, grid: int) -> np.ndarray:
        if (size, grid) not in self._upsampling:
            self._upsampling[size, grid] = gaussian_upsampling_matrix(size, grid).astype(np.float32)
        return self._upsampling[size, grid]

    # -- sampling -----------------------------------------------------------------------------

    def __call__(self, batch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """A randomly distorted copy of ``batch`` (``(N, H, W)`` or ``(N, C, H, W)``); labels are unchanged."""
        n, height, width = batch.shape[0], batch.shape[-2], batch.shape[-1]
        matrices, shifts = self.random_affine(n, rng)
        displacement = self.random_elastic(n, height, width, rng)
        distorted = self.transform(batch, matrices, shifts, displacement)
        return self.pen_and_scanner(distorted, rng) if self.strength.degrades else distorted

    def pen_and_scanner(self, batch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Random stroke weight, low-resolution scan, blur and noise per image (see the module notes)."""
        s = self.strength
        n, height, width = batch.shape[0], batch.shape[-2], batch.shape[-1]
        images = batch.reshape(n, -1, height, width)
        if s.stroke:
            # Grey dilation spreads ink (bright) into the background; erosion wears it away.
            change = rng.random((2, n)) < s.stroke
            thicker = ndimage.grey_dilation(images, footprint=_CROSS)
            thinner = ndimage.grey_erosion(images, size=(1, 1, 2, 2))
            images = np.where(change[0][:, None, None, None], thicker, images)
            images = np.where((change[1] & ~change[0])[:, None, None, None], thinner, images)
        if s.low_res_chance or s.blur:
            rows, columns = self._scan_matrices(height, rng, n), self._scan_matrices(width, rng, n)
            images = rows[:, None] @ images @ columns[:, None].transpose(0, 1, 3, 2)
        if s.noise_chance:
            images = self._noisy(images, rng)
        return images.reshape(batch.shape).astype(batch.dtype, copy=False)

    def _noisy(self, images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Gaussian noise on a random share of the images, kept between no ink and full ink."""
        n = len(images)
        levels = np.where(rng.random(n) < self.strength.noise_chance, rng.uniform(0, self.strength.noise, n), 0.0)
        scale = (levels * (self.full_ink - self.background)).astype(images.dtype)
        noise = rng.standard_normal(images.shape, dtype=images.dtype) * scale[:, None, None, None]
        low, high = sorted((self.background, self.full_ink))
        return np.clip(images + noise, low, high)

    def _scan_matrices(self, size: int, rng: np.random.Generator, n: int) -> np.ndarray:
        """``(n, size, size)``: one random low-resolution-and-blur map per image (identity often)."""
        s = self.strength
        sides = list(range(s.low_res[0], s.low_res[1] + 1)) if s.low_res else []
        key = (size, tuple(sides), s.blur)
        if key not in self._scan_tables:
            blurs = np.linspace(0, s.blur, 4) if s.blur else np.zeros(1)
            self._scan_tables[key] = np.stack(
                [
                    gaussian_blur_matrix(size, sigma) @ (resample_matrix(size, side) if side else np.eye(size))
                    for side in [0, *sides]
                    for sigma in blurs
                ]
            ).astype(np.float32)
        table = self._scan_tables[key]
        per_side = len(table) // (len(sides) + 1)
        low = rng.random(n) < s.low_res_chance
        side = np.where(low, rng.integers(1, len(sides) + 1, n), 0) if sides else np.zeros(n, dtype=np.int64)
        return table[side * per_side + rng.integers(0, per_side, n)]

    def _homogeneous_grid(self, height: int, width: int) -> np.ndarray:
        """Rows ``x``, ``y`` (relative to the image centre) and ``1`` of every output pixel, (3, H*W)."""
        if (height, width) not in self._grids:
            y, x = np.mgrid[0:height, 0:width].astype(np.float32)
            self._grids[height, width] = np.stack(
                [x.ravel() - (width - 1) / 2, y.ravel() - (height - 1) / 2, np.ones(height * width, dtype=np.float32)]
            )
        return self._grids[height, width]

    def transform(
        self, batch: np.ndarray, matrices: np.ndarray, shifts: np.ndarray, displacement: np.ndarray | None = None
    ) -> np.ndarray:
        """Resample every image of ``batch`` with its own affine map and optional displacement.

        Parameters
        ----------
        batch : ndarray
            ``(N, H, W)`` or ``(N, C, H, W)``; all channels of an image move together.
        matrices : ndarray
            ``(N, 2, 2)``: output offset from the centre (x, y) -> input offset.
        shifts : ndarray
            ``(N, 2)``: added to the input point, in pixels (x, y).
        displacement : ndarray, optional
            ``(N, 2, H, W)``: a further per-pixel offset of the input point (x, then y).

        Returns
        -------
        ndarray
            Same shape and dtype as ``batch``. The identity matrix with zero shifts returns the batch.
        """
        shape = batch.shape
        n, height, width = shape[0], shape[-2], shape[-1]
        images = batch.reshape(-1, height, width)  # (N*C, H, W); channels share their image's map
        channels = images.shape[0] // n
        dtype = batch.dtype if batch.dtype.kind == "f" else np.dtype(np.float32)
        padded_h, padded_w = height + 2 * _PAD, width + 2 * _PAD
        if len(images) * padded_h * padded_w >= 2**24:  # beyond float32's exact integers: split
            half = n // 2
            return np.concatenate(
                [
                    self.transform(
                        batch[:half],
                        matrices[:half],
                        shifts[:half],
                        None if displacement is None else displacement[:half],
                    ),
                    self.transform(
                        batch[half:],
                        matrices[half:],
                        shifts[half:],
                        None if displacement is None else displacement[half:],
                    ),
                ]
            )

        work = self._workspace(len(images), height, width, dtype)

        # Sample points (x, y) in the padded frame for every output pixel, (N, 2, H*W), as one
        # matrix product: [A | centre + t] @ [grid_x; grid_y; 1]. For nearest sampling the points
        # move by half a pixel, so that truncating them below gives the nearest pixel.
        affine = np.empty((n, 2, 3), dtype=np.float32)
        affine[:, :, :2] = matrices
        affine[:, :, 2] = shifts + np.array([(width - 1) / 2 + _PAD, (height - 1) / 2 + _PAD]) + work.sampler.half_pixel
        source = work.source
        if channels == 1:
            np.matmul(affine.reshape(2 * n, 3), self._homogeneous_grid(height, width), out=source.reshape(2 * n, -1))
            if displacement is not None:
                source += displacement.reshape(n, 2, -1)
        else:
            points = (affine.reshape(2 * n, 3) @ self._homogeneous_grid(height, width)).reshape(n, 2, -1)
            if displacement is not None:
                points += displacement.reshape(n, 2, -1)
            source[...] = np.repeat(points, channels, axis=0)

        # Clamp into the padded frame: anything outside then reads the background border.
        if padded_h == padded_w:  # one pass over the contiguous array instead of two strided ones
            np.clip(source, 0, padded_w - 1.001, out=source)
        else:
            np.clip(source[:, 0], 0, padded_w - 1.001, out=source[:, 0])
            np.clip(source[:, 1], 0, padded_h - 1.001, out=source[:, 1])

        padded = work.padded  # its border was filled with the background once
        padded[:, _PAD : _PAD + height, _PAD : _PAD + width] = images
        return work.sampler(padded.reshape(-1), source, padded_w).reshape(shape)

    def _workspace(self, images: int, height: int, width: int, dtype: np.dtype) -> _Workspace:
        """Work arrays for batches of this size, made once and reused.

        Why: allocating a dozen fresh arrays per batch costs more (page faults on first touch) than
        the arithmetic itself. It also means one augmenter must not be called from two threads at once.
        """
        key = (images, height, width, np.dtype(dtype))
        if key not in self._workspaces:
            if len(self._workspaces) >= 2:  # a full and a last, shorter batch are the usual pair
                self._workspaces.pop(next(iter(self._workspaces)))
            padded_h, padded_w = height + 2 * _PAD, width + 2 * _PAD
            pixels, image_size = height * width, padded_h * padded_w
            sampler: NearestSampler | BilinearSampler
            if self.strength.interpolation == "nearest":
                sampler = NearestSampler(images, pixels, image_size)
            else:
                sampler = BilinearSampler(images, pixels, image_size, dtype)
            self._workspaces[key] = _Workspace(
                source=np.empty((images, 2, pixels), dtype=np.float32),
                padded=np.full((images, padded_h, padded_w), self.background, dtype=dtype),
                sampler=sampler,
            )
        return self._workspaces[key]


class NearestSampler:
    """Reads the pixel each sample point falls in: one gather per output pixel.

    Its work arrays fit batches of ``images`` images of ``pixels`` output pixels each, whose padded
    frames hold ``image_size`` pixels.
    """

    #: Sample points move by half a pixel, so that truncating them gives the nearest pixel.
    half_pixel = 0.5

    def __init__(self, images: int, pixels: int, image_size: int) -> None:
        self.cells = np.empty((images, 2, pixels), dtype=np.int32)
        self.index = np.empty((images, pixels), dtype=np.int32)
        self.image_start = (np.arange(images, dtype=np.int32) * image_size)[:, None]

    def __call__(self, flat: np.ndarray, source: np.ndarray, padded_w: int) -> np.ndarray:
        """The pixel values at the (already half-pixel shifted) points ``source`` ``(N, 2, P)``."""
        # The points are >= 0, so casting to integers truncates them down: the pixel they fall in.
        # Integer arithmetic on int32 is the cheapest route to the flat index (casts to int64 and
        # float index arithmetic cost more than the gather itself).
        np.copyto(self.cells, source, casting="unsafe")
        index = np.multiply(self.cells[:, 1], padded_w, out=self.index)
        index += self.cells[:, 0]
        index += self.image_start
        # A fresh array (not a work array): the caller keeps the batch while the next is made.
        # mode="clip" skips take's error path; every index is in range by construction.
        return flat.take(index, mode="clip")


class BilinearSampler:
    """Interpolates between the four pixels around each sample point (for smooth elastic fields)."""

    half_pixel = 0.0

    def __init__(self, images: int, pixels: int, image_size: int, dtype: np.dtype) -> None:
        self.whole = np.empty((images, 2, pixels), dtype=np.float32)
        self.image_start = (np.arange(images, dtype=np.float32) * image_size)[:, None]
        self.corner = np.empty((images, pixels), dtype=np.intp)
        self.neighbour = np.empty((images, pixels), dtype=np.intp)
        self.values = np.empty((4, images, pixels), dtype=dtype)

    def __call__(self, flat: np.ndarray, source: np.ndarray, padded_w: int) -> np.ndarray:
        """The interpolated values at the points ``source`` ``(N, 2, P)`` (which is overwritten)."""
        whole = np.floor(source, out=self.whole)
        frac = np.subtract(source, whole, out=source)  # bilinear weights of the right and lower pixels
        frac_x, frac_y = frac[:, 0], frac[:, 1]

        # Flat index of each top-left neighbour in the padded batch; float32 is exact below 2**24.
        left, top = whole[:, 0], whole[:, 1]
        top *= padded_w
        top += left
        top += self.image_start
        corner, neighbour = self.corner, self.neighbour
        corner[...] = top

        top_left, top_right, bottom_left, bottom_right = self.values
        # mode="clip" skips take's error path; every index is in range by construction.
        flat.take(corner, out=top_left, mode="clip")
        flat.take(np.add(corner, 1, out=neighbour), out=top_right, mode="clip")
        flat.take(np.add(corner, padded_w, out=neighbour), out=bottom_left, mode="clip")
        flat.take(np.add(corner, padded_w + 1, out=neighbour), out=bottom_right, mode="clip")

        # Linear interpolation along x on both rows, then along y (in place: fewer memory passes).
        upper, lower = top_right, bottom_right
        upper -= top_left
        upper *= frac_x
        upper += top_left
        lower -= bottom_left
        lower *= frac_x
        lower += bottom_left
        lower -= upper
        lower *= frac_y
        return np.add(lower, upper)


@dataclass
class _Workspace:
    """What one batch size needs: sample points, the padded images and the sampler's arrays."""

    source: np.ndarray
    padded: np.ndarray
    sampler: NearestSampler | BilinearSampler


def make_augmenter(name: str | None, background: float = 0.0, full_ink: float = 1.0) -> Augmenter | None:
    """The augmenter for ``digitnet train --augment NAME``; ``None`` or ``"none"`` gives ``None``."""
    if name is None or name == "none":
        return None
    return Augmenter(name, background, full_ink)
