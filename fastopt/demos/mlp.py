"""A small multi-layer perceptron in NumPy: ReLU hidden layers, a softmax output, cross-entropy
loss and a hand-written backward pass, its parameters packed into one flat buffer.

Forward, for layers ``l = 1..L`` with ``h₀ = x``::

    hₗ = relu(hₗ₋₁ Wₗ + bₗ)   (l < L),     logits = hₗ₋₁ W_L + b_L,
    loss = −mean_i log softmax(logits)_i[yᵢ]

Backward, with ``d = (softmax(logits) − onehot(y)) / n`` at the output::

    ∂Wₗ = hₗ₋₁ᵀ d,   ∂bₗ = Σᵢ d,   d ← (d Wₗᵀ) ⊙ [hₗ₋₁ > 0]

Initialisation: He (normal, variance 2/fan_in) for the ReLU layers, Xavier/Glorot (uniform,
variance 2/(fan_in + fan_out)) for the linear output layer; biases zero.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

import fastopt


class MLP:
    def __init__(self, sizes: Sequence[int], seed: int = 0, dtype: type = np.float32) -> None:
        rng = np.random.default_rng(seed)
        arrays = []
        for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            if i < len(sizes) - 2:  # hidden layer, ReLU: He
                w = rng.standard_normal((fan_in, fan_out)) * np.sqrt(2.0 / fan_in)
            else:  # output layer, linear: Xavier
                limit = np.sqrt(6.0 / (fan_in + fan_out))
                w = rng.uniform(-limit, limit, (fan_in, fan_out))
            arrays += [w.astype(dtype), np.zeros(fan_out, dtype)]
        # The model is one contiguous buffer (each array a view into it), its gradient another
        # of the same layout: the optimizer updates everything in one kernel call.
        self.flat, views = fastopt.flatten(arrays)
        self.grad, grad_views = fastopt.flatten([np.zeros_like(a) for a in arrays])
        self.weights, self.biases = views[0::2], views[1::2]
        self.grad_weights, self.grad_biases = grad_views[0::2], grad_views[1::2]

    @property
    def size(self) -> int:
        return sum(a.size for a in self.weights + self.biases)

    def logits(self, x: np.ndarray) -> np.ndarray:
        h = x
        for w, b in zip(self.weights[:-1], self.biases[:-1]):
            h = np.maximum(h @ w + b, 0)
        return h @ self.weights[-1] + self.biases[-1]

    def predict(self, x: np.ndarray, batch: int = 4096) -> np.ndarray:
        return np.concatenate([self.logits(x[i : i + batch]).argmax(axis=1)
                               for i in range(0, len(x), batch)])

    def loss_and_grad(self, x: np.ndarray, y: np.ndarray) -> float:
        """Cross-entropy on the batch; writes its gradient into :attr:`grad`."""
        hs = [x]
        for w, b in zip(self.weights[:-1], self.biases[:-1]):
            hs.append(np.maximum(hs[-1] @ w + b, 0))
        logits = hs[-1] @ self.weights[-1] + self.biases[-1]
        shifted = logits - logits.max(axis=1, keepdims=True)  # softmax without overflow
        log_norm = np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        log_p = shifted - log_norm
        rows = np.arange(len(y))
        loss = -float(log_p[rows, y].mean())
        d = np.exp(log_p)
        d[rows, y] -= 1
        d /= len(y)
        for layer in range(len(self.weights) - 1, -1, -1):
            h = hs[layer]
            np.matmul(h.T, d, out=self.grad_weights[layer])
            np.sum(d, axis=0, out=self.grad_biases[layer])
            if layer:
                d = (d @ self.weights[layer].T) * (h > 0)
        return loss
