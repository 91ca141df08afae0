"""Convolution and max pooling over images ``(N, C, H, W)``.

Both layers follow the contract in :mod:`digitnet.nn.layers`. The convolution is the textbook
*im2col* construction: copy every ``kh x kw`` input patch into a column of one large matrix, so that
the whole layer is a single matrix product (and its backward pass two more)::

    cols[(c, i, j), (y, x, n)] = x_padded[n, c, y + i, x + j]
    out[f, (y, x, n)]          = sum_k W[f, k] cols[k, (y, x, n)] + b[f]

    dL/dW    = g @ cols.T          (g = dL/d(out) as an (F, Ho*Wo*N) matrix)
    dL/db    = g summed over (y, x, n)
    dL/dcols = W.T @ g             and col2im adds each column back onto the patch it came from.

Why the memory layout is ``(C, H, W, N)`` inside (the batch fastest): the product above yields
``(F, Ho, Wo, N)`` directly, and the next convolution wants exactly that order for its own
columns. So a layer returns its output as a *transposed view* with the logical shape
``(N, C, H, W)`` that every other layer (and PyTorch) expects, while the bytes stay batch-last;
elementwise layers keep that layout (NumPy preserves memory order), and the next convolution reads
it back without a copy. With the batch innermost, the rows of every patch copy (im2col) and every
patch sum (col2im) are ``Wo * N`` values long instead of ``Wo``: on the 14x14 maps of the default
CNN that made both two to three times faster than the channel-major ``(C, N, H, W)`` layout used
before, at the same matrix products. The weights keep PyTorch's layout, so model files do not change.

During training the padded input, the column matrix and the gradient buffers are kept from one
batch to the next (same shapes every batch): no fresh allocation per step. Inference allocates
its own arrays, so that several threads may predict with one network at once.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from .init import he_normal
from .layers import Layer, axes_by_stride, in_layout, register


def _same_padding(kernel: int) -> tuple[int, int]:
    """Padding before and after an axis so that a stride-1 output keeps the input's size.

    An even kernel cannot be centred; like PyTorch, the extra row or column goes after.
    """
    total = kernel - 1
    return total // 2, total - total // 2


@register
class Conv2D(Layer):
    """2-D convolution (strictly, cross-correlation, as in every framework) with stride 1.

    Parameters
    ----------
    in_channels, out_channels : int
    kernel_size : int or (int, int)
        Height and width of each filter.
    padding : "same", "valid" or int
        ``"same"`` keeps height and width (zero padding), ``"valid"`` uses no padding, an integer
        pads that many zeros on every side.
    rng : numpy.random.Generator, optional
        Draws He-initialised weights; without it the weights are zeros, to be loaded from a file.
    dtype : numpy dtype, optional

    Notes
    -----
    ``W`` has PyTorch's shape ``(out_channels, in_channels, kh, kw)``; ``b`` has ``(out_channels,)``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int] = 3,
        padding: str | int = "same",
        *,
        rng: np.random.Generator | None = None,
        dtype=np.float32,
    ) -> None:
        super().__init__()
        kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) else tuple(kernel_size)
        if isinstance(padding, str) and padding not in ("same", "valid"):
            raise ValueError(f"padding must be 'same', 'valid' or an int, not {padding!r}")
        if not isinstance(padding, str) and padding < 0:
            raise ValueError(f"padding must not be negative, got {padding}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.padding = (int(kh), int(kw)), padding
        if padding == "same":
            self.pad_h, self.pad_w = _same_padding(kh), _same_padding(kw)
        elif padding == "valid":
            self.pad_h = self.pad_w = (0, 0)
        else:
            self.pad_h = self.pad_w = (int(padding), int(padding))
        fan_in = in_channels * kh * kw
        shape = (out_channels, in_channels, kh, kw)
        weights = np.zeros(shape, dtype=dtype) if rng is None else he_normal(fan_in, shape, rng, dtype)
        self.params = {"W": weights, "b": np.zeros(out_channels, dtype=dtype)}
        self.grads = {name: np.zeros_like(value) for name, value in self.params.items()}
        self.cols: np.ndarray | None = None
        self._buffers: dict[str, np.ndarray] = {}  # training work arrays, reused batch to batch

    def replica(self) -> Conv2D:
        twin = super().replica()
        assert isinstance(twin, Conv2D)
        twin._buffers, twin.cols = {}, None  # work arrays of its own: the twin's thread writes them
        return twin

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        _, height, width = input_shape
        kh, kw = self.kernel_size
        return (self.out_channels, height + sum(self.pad_h) - kh + 1, width + sum(self.pad_w) - kw + 1)

    #: Inference on a large batch runs in chunks whose column matrix holds at most this many values
    #: (32 MB in float32). Why: that matrix is kh*kw times the input, gigabytes for a whole test set.
    inference_chunk_values: ClassVar[int] = 8_000_000

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        if training:
            self.input_shape = x.shape
            out, self.cols = self._convolve(x, self._buffers)
            return out
        per_image = (
            self.in_channels
            * self.kernel_size[0]
            * self.kernel_size[1]
            * int(np.prod(self.output_shape(x.shape[1:])[1:]))
        )
        chunk = max(1, self.inference_chunk_values // max(1, per_image))
        if len(x) <= chunk:
            return self._convolve(x)[0]
        parts = [self._convolve(x[i : i + chunk])[0].transpose(1, 2, 3, 0) for i in range(0, len(x), chunk)]
        return np.concatenate(parts, axis=3).transpose(3, 0, 1, 2)  # keep the batch-last layout

    def _buffer(self, buffers: dict[str, np.ndarray] | None, name: str, shape: tuple[int, ...], dtype) -> np.ndarray:
        """A work array: kept in ``buffers`` between training batches, fresh for inference."""
        if buffers is None:
            return np.empty(shape, dtype=dtype)
        kept = buffers.get(name)
        if kept is None or kept.shape != shape or kept.dtype != dtype:
            kept = buffers[name] = np.empty(shape, dtype=dtype)
            if name.startswith("padded"):
                kept.fill(0)  # the border stays zero; only the interior is ever written
        return kept

    def _padded(self, x: np.ndarray, buffers: dict[str, np.ndarray] | None) -> np.ndarray:
        """The input in the ``(C, H, W, N)`` layout with its zero border (no copy without padding
        when ``x`` came from a convolution)."""
        n, c, height, width = x.shape
        (top, bottom), (left, right) = self.pad_h, self.pad_w
        x_chwn = x.transpose(1, 2, 3, 0)
        if not (top or bottom or left or right):
            return x_chwn
        shape = (c, height + top + bottom, width + left + right, n)
        padded = self._buffer(buffers, "padded", shape, x.dtype)
        if buffers is None:
            padded.fill(0)
        padded[:, top : top + height, left : left + width] = x_chwn
        return padded

    def _convolve(self, x: np.ndarray, buffers: dict[str, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The im2col forward pass for one batch: the output and the column matrix behind it."""
        n, c, height, width = x.shape
        kh, kw = self.kernel_size
        out_h, out_w = self.output_shape((c, height, width))[1:]
        if out_h < 1 or out_w < 1:
            raise ValueError(f"a {kh}x{kw} kernel does not fit a {height}x{width} input")
        padded = self._padded(x, buffers)
        # im2col: every patch at once, as a strided view of the input, in one copy (no loop over
        # kernel offsets or positions: NumPy then holds the GIL once, not kh*kw times, which is what
        # lets threads sharing a batch run side by side; see digitnet.parallel).
        cols = self._buffer(buffers, "cols", (c, kh, kw, out_h, out_w, n), x.dtype)
        np.copyto(cols, _patches(padded, (kh, kw)).transpose(0, 4, 5, 1, 2, 3))
        cols = cols.reshape(c * kh * kw, out_h * out_w * n)
        out = self.params["W"].reshape(self.out_channels, -1) @ cols
        out += self.params["b"][:, None]
        return out.reshape(self.out_channels, out_h, out_w, n).transpose(3, 0, 1, 2), cols

    def backward(self, grad_out: np.ndarray) -> np.ndarray | None:
        cols = self.saved(self.cols)
        n, c, height, width = self.input_shape
        kh, kw = self.kernel_size
        out_h, out_w = grad_out.shape[2:]
        # g as an (F, Ho*Wo*N) matrix; no copy when it arrives in the layout forward produced.
        g = np.ascontiguousarray(grad_out.transpose(1, 2, 3, 0)).reshape(self.out_channels, -1)
        weight_gradient(g, cols, out=self.grads["W"].reshape(self.out_channels, -1))
        np.sum(g, axis=1, out=self.grads["b"])
        if not self.needs_input_grad:
            return None
        grad_cols = self._buffer(self._buffers, "grad_cols", cols.shape, g.dtype)
        np.matmul(self.params["W"].reshape(self.out_channels, -1).T, g, out=grad_cols)
        grad_cols6 = grad_cols.reshape(c, kh, kw, out_h, out_w, n)
        # col2im: every column entry flows back to the input pixel it was copied from.
        (top, bottom), (left, right) = self.pad_h, self.pad_w
        shape = (c, height + top + bottom, width + left + right, n)
        grad_padded = np.zeros(shape, dtype=g.dtype)  # fresh: the caller may keep the result
        for i in range(kh):
            for j in range(kw):
                grad_padded[:, i : i + out_h, j : j + out_w] += grad_cols6[:, i, j]
        grad_x = grad_padded[:, top : top + height, left : left + width]
        return grad_x.transpose(3, 0, 1, 2)

    def summary(self) -> str:
        return (
            f"conv{self.config()['kernel_size'][0]}x{self.config()['kernel_size'][1]}:{self.config()['out_channels']}"
        )

    def config(self) -> dict[str, Any]:
        return {
            "in_channels": self.in_channels,
            "out_channels": self.out_channels,
            "kernel_size": list(self.kernel_size),
            "padding": self.padding,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any], dtype=np.float32) -> Conv2D:
        return cls(
            config["in_channels"], config["out_channels"], tuple(config["kernel_size"]), config["padding"], dtype=dtype
        )


@register
class MaxPool2D(Layer):
    """Max pooling: each output is the largest value in its ``k x k`` window.

    Only the window's maximum receives gradient (it alone affected the output); on ties the first
    maximum in reading order wins, as in PyTorch. Windows that would run past the edge are dropped
    (PyTorch's default ``ceil_mode=False``), so odd sizes lose their last row or column.

    Parameters
    ----------
    pool_size : int
        Window height and width.
    stride : int, optional
        Step between windows; defaults to ``pool_size`` (non-overlapping windows).
    """

    def __init__(self, pool_size: int = 2, stride: int | None = None) -> None:
        super().__init__()
        self.pool_size = int(pool_size)
        self.stride = int(stride) if stride is not None else self.pool_size
        if self.pool_size < 1 or self.stride < 1:
            raise ValueError("pool_size and stride must be positive")
        self.x: np.ndarray | None = None
        self.argmax: np.ndarray | None = None

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        c, height, width = input_shape
        return (c, (height - self.pool_size) // self.stride + 1, (width - self.pool_size) // self.stride + 1)

    def _window_offsets(self, out_h: int, out_w: int):
        """``(index, slices)`` for each offset in the window: the inputs at that offset of every window."""
        s = self.stride
        for i in range(self.pool_size):
            for j in range(self.pool_size):
                yield (
                    i * self.pool_size + j,
                    (
                        slice(None),
                        slice(None),
                        slice(i, i + s * (out_h - 1) + 1, s),
                        slice(j, j + s * (out_w - 1) + 1, s),
                    ),
                )

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        out_h, out_w = self.output_shape(x.shape[1:])[1:]
        if out_h < 1 or out_w < 1:
            raise ValueError(f"a {self.pool_size}x{self.pool_size} pool does not fit a {x.shape[2:]} input")
        offsets = self._window_offsets(out_h, out_w)
        # Each offset's inputs are first copied into a compact array (order="K" keeps the input's
        # memory layout, see the module notes): comparisons on compact arrays are many times faster
        # than on the strided slices themselves.
        _, first = next(offsets)
        out = np.array(x[first], order="K")
        if not training:
            for _, window in offsets:
                np.maximum(out, x[window], out=out)
            return out
        # Which offset held the maximum, for backward.
        argmax = np.zeros_like(out, dtype=_argmax_dtype(self.pool_size))
        for index, window in offsets:
            _keep_larger(out, argmax, np.array(x[window], order="K"), index)
        self.x, self.argmax = x, argmax
        return out

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        x, argmax = self.saved(self.x), self.saved(self.argmax)
        out_h, out_w = grad_out.shape[2:]
        covers_input = (
            self.stride == self.pool_size and out_h * self.stride == x.shape[2] and out_w * self.stride == x.shape[3]
        )
        # Every input is written below when the windows tile the input exactly; otherwise the
        # inputs outside every window must read 0.
        grad_x = (np.empty_like if covers_input else np.zeros_like)(x, dtype=grad_out.dtype)
        # The output gradient in the memory order of argmax (that of the input, batch-last after a
        # convolution): one transposing copy here instead of four scattered writes below.
        grad_out = in_layout(grad_out, axes_by_stride(argmax))
        overlapping = self.stride < self.pool_size
        for index, window in self._window_offsets(out_h, out_w):
            if overlapping:  # several windows may share an input: add their contributions
                grad_x[window] += grad_out * (argmax == index)
            else:
                np.multiply(grad_out, argmax == index, out=grad_x[window])
        return grad_x

    def summary(self) -> str:
        return f"pool{self.config()['pool_size']}"

    def config(self) -> dict[str, Any]:
        return {"pool_size": self.pool_size, "stride": self.stride}


class PooledConv2D(Layer):
    """A :class:`Conv2D` and the non-overlapping :class:`MaxPool2D` after it, as one training step.

    :class:`~digitnet.nn.network.Network` trains such pairs through this class; inference and
    model files see the two layers as they are, and the results are the same up to rounding.
    Why: pooling a convolution's ``(C, H, W, N)`` output reads each window's ``k*k`` values from
    strided places, and those passes cost more than the first convolution itself. Here im2col
    orders its columns by the position ``(a, b)`` inside the pooling window first::

        cols[(c, i, j), (a, b, y, x, n)] = x_padded[n, c, k*y + a + i, k*x + b + j]

    so the product ``W @ cols`` holds the ``k*k`` candidates of every window as ``k*k`` contiguous
    blocks, and the maximum is an elementwise pass over whole blocks. The bias is added after
    pooling (``max(v + b) == max(v) + b``): a ``k*k``-th of the additions. Rows and columns that
    the pooling drops are never convolved. The matrix products are those of :class:`Conv2D`.

    Only for a convolution that needs no input gradient (the network's first): with one, col2im
    in this column order makes ``k*k`` times as many short strided additions, and on the default
    CNN's second stage that cost more than the pooling saves (BENCHMARKS.md, issue 12).
    """

    def __init__(self, conv: Conv2D, pool: MaxPool2D) -> None:
        super().__init__()
        if pool.stride != pool.pool_size or conv.needs_input_grad:
            raise ValueError("only a first convolution and non-overlapping pooling run fused")
        self.conv, self.k = conv, pool.pool_size
        self.params, self.grads = conv.params, conv.grads
        self.cols: np.ndarray | None = None
        self.argmax: np.ndarray | None = None

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        conv, k = self.conv, self.k
        n, c, height, width = x.shape
        kh, kw = conv.kernel_size
        out_h, out_w = conv.output_shape((c, height, width))[1:]
        pool_h, pool_w = out_h // k, out_w // k
        if pool_h < 1 or pool_w < 1:
            raise ValueError(f"a {kh}x{kw} convolution and {k}x{k} pooling do not fit a {height}x{width} input")
        buffers = conv._buffers if training else None
        padded = conv._padded(x, buffers)
        cols = conv._buffer(buffers, "pooled_cols", (c, kh, kw, k, k, pool_h, pool_w, n), x.dtype)
        # Output position (k*y + a, k*x + b) split into the window (y, x) and the place in it (a, b):
        # splitting an axis never needs a copy, so the patches stay a view until the one copy into cols.
        patches = _patches(padded, (kh, kw))[:, : k * pool_h, : k * pool_w]
        patches = patches.reshape(c, pool_h, k, pool_w, k, n, kh, kw)
        np.copyto(cols, patches.transpose(0, 6, 7, 2, 4, 1, 3, 5))
        cols = cols.reshape(c * kh * kw, -1)
        candidates = (conv.params["W"].reshape(conv.out_channels, -1) @ cols).reshape(conv.out_channels, k * k, -1)
        # The running maximum over the window's positions, as MaxPool2D takes it. (Ties are judged
        # before the bias: values that only adding the bias would round together may route differently.)
        out = candidates[:, 0].copy()
        argmax = np.zeros(out.shape, dtype=_argmax_dtype(k))
        for index in range(1, k * k):
            _keep_larger(out, argmax, candidates[:, index], index)
        out += conv.params["b"][:, None]
        if training:
            self.cols, self.argmax = cols, argmax
        return out.reshape(conv.out_channels, pool_h, pool_w, n).transpose(3, 0, 1, 2)

    def backward(self, grad_out: np.ndarray) -> np.ndarray | None:
        conv, k = self.conv, self.k
        cols, argmax = self.saved(self.cols), self.saved(self.argmax)
        g = np.ascontiguousarray(grad_out.transpose(1, 2, 3, 0)).reshape(conv.out_channels, -1)
        np.sum(g, axis=1, out=self.grads["b"])
        # Each window's gradient goes to the candidate that won it, in the columns' block order.
        g_conv = conv._buffer(conv._buffers, "pooled_grad", (conv.out_channels, k * k, g.shape[1]), g.dtype)
        for index in range(k * k):
            np.multiply(g, argmax == index, out=g_conv[:, index])
        g_conv = g_conv.reshape(conv.out_channels, -1)
        weight_gradient(g_conv, cols, out=self.grads["W"].reshape(conv.out_channels, -1))
        return None  # the first convolution: nothing before it needs dL/d(input)


def fuse_for_training(layers: list[Layer]) -> list[Layer]:
    """The steps a training pass runs: ``layers``, with a first convolution (one that needs no
    input gradient) and the non-overlapping max pooling after it as one :class:`PooledConv2D`."""
    steps: list[Layer] = []
    for layer in layers:
        previous = steps[-1] if steps else None
        if (
            isinstance(layer, MaxPool2D)
            and layer.stride == layer.pool_size
            and isinstance(previous, Conv2D)
            and not previous.needs_input_grad
        ):
            steps[-1] = PooledConv2D(previous, layer)
        else:
            steps.append(layer)
    return steps


#: Slab width of :func:`weight_gradient`'s long sums, and when it uses them: a result of at most
#: ``_SLABS_UP_TO`` values (a first convolution's 20 x 25 = 500; the second's 40 x 500 = 20,000 gained
#: nothing) and at least ``_SLABS_FROM`` slabs. Measured with OpenBLAS's SkylakeX kernels only.
_SLAB, _SLABS_UP_TO, _SLABS_FROM = 1024, 4096, 4


def weight_gradient(g: np.ndarray, cols: np.ndarray, out: np.ndarray) -> None:
    """``out = g @ cols.T``: a convolution's weight gradient, a sum over every position of the batch
    (``g`` is dL/d(output) as an ``(F, positions)`` matrix, ``cols`` the im2col columns).

    How it is computed is chosen by speed (one thread, AVX-512 host, 2026-12-04):

    * the second convolution's 40 x 4,096 x 500 product runs as ``cols @ g.T`` (copied into
      ``out`` transposed): 1.53 ms against 2.01 for ``g @ cols.T``;
    * a first convolution's result is tiny (20 x 25) and its sum long (36,864 positions), a shape
      OpenBLAS runs at a fraction of its speed: slabs of :data:`_SLAB` positions as one batched
      product, the partial results added, took 0.56 ms against 0.96.
    """
    slabs = g.shape[1] // _SLAB
    if out.size > _SLABS_UP_TO or slabs < _SLABS_FROM:
        np.copyto(out, (cols @ g.T).T)
        return
    whole = slabs * _SLAB
    partial = np.matmul(
        g[:, :whole].reshape(len(g), slabs, _SLAB).transpose(1, 0, 2),
        cols[:, :whole].reshape(len(cols), slabs, _SLAB).transpose(1, 2, 0),
    )
    np.sum(partial, axis=0, out=out)
    if whole < g.shape[1]:
        out += g[:, whole:] @ cols[:, whole:].T


def _patches(padded: np.ndarray, kernel: tuple[int, int]) -> np.ndarray:
    """Every ``kh x kw`` patch of a ``(C, H, W, N)`` array, as a read-only view of shape
    ``(C, out_h, out_w, N, kh, kw)``: entry ``[c, y, x, n, i, j]`` is ``padded[c, y + i, x + j, n]``."""
    return np.lib.stride_tricks.sliding_window_view(padded, kernel, axis=(1, 2))


def _argmax_dtype(pool_size: int) -> type[np.integer]:
    """The smallest integer type that numbers the positions of a ``pool_size`` window."""
    return np.uint8 if pool_size**2 <= 256 else np.int32


def _keep_larger(out: np.ndarray, argmax: np.ndarray, candidate: np.ndarray, index: int) -> None:
    """One step of a running maximum over a window's positions, in place: where ``candidate`` (the
    values at position ``index``) is strictly larger than ``out``, take it and record ``index``.
    Positions come in increasing order, so ``>`` keeps the first of tied maxima, as PyTorch does."""
    larger = candidate > out
    np.maximum(argmax, larger.astype(argmax.dtype) * index, out=argmax)
    np.maximum(out, candidate, out=out)
