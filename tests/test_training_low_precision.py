"""Low-precision storage trains: an MLP on scikit-learn's digits, 400 AdamW steps, in every
storage mode, against float32 and float32's seed noise.

Proves that
- bfloat16 parameters with stochastic rounding or Kahan compensation, and 8-bit moments (with
  float32 or bfloat16 parameters), end within float32's seed noise of float32's training loss;
- bfloat16 parameters rounded to nearest (fastopt's ``rounding="nearest"``, and torch's own
  bfloat16 AdamW) stall: at least twice float32's loss;
- each parameter moves as far from its start as it does in float32 with stochastic rounding
  and Kahan (the ratio of the distances is about 1), less when rounded to nearest; with 8-bit
  moments it does not (a known problem, an expected failure below: some elements' second
  moment is stored as 0).

Every run starts from the same weights (seed 0) and sees the same mini-batches; the seed-noise
run changes both. Forward and backward run in float32 on the parameters' values; bfloat16 runs
hand the optimizer bfloat16 gradients, as mixed-precision training does.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

import fastopt

ml_dtypes = pytest.importorskip("ml_dtypes")
pytest.importorskip("sklearn")
from fastopt.demos.data import load_digits  # noqa: E402
from fastopt.demos.mlp import MLP  # noqa: E402

BF16 = np.dtype(ml_dtypes.bfloat16)
STEPS, BATCH, SIZES = 400, 64, (64, 128, 128, 10)
# lr 3e-4: most steps are under half a bfloat16 ulp of the weights (about 1e-3 at |w| ~ 0.2),
# the regime where rounding to nearest loses them.
OPTIONS = dict(lr=3e-4, weight_decay=1e-2)

MODES = {
    # name: (parameter dtype, fastopt options); "torch" is torch.optim.AdamW on bfloat16
    "float32": (np.float32, {}),
    "bf16 nearest": (BF16, dict(state_dtype="bfloat16", rounding="nearest")),
    "bf16 stochastic": (BF16, dict(state_dtype="bfloat16", rounding="stochastic")),
    "bf16 kahan": (BF16, dict(state_dtype="bfloat16", rounding="kahan")),
    "f32 8-bit moments": (np.float32, dict(state_dtype="8bit")),
    "bf16 8-bit moments": (BF16, dict(state_dtype="8bit", rounding="stochastic")),
}
GOOD = ["bf16 stochastic", "bf16 kahan", "f32 8-bit moments", "bf16 8-bit moments"]


@functools.cache
def _data():
    return load_digits()[:2]


def train(mode: str, seed: int = 0) -> tuple[float, float]:
    """(training loss over the whole training split, distance the parameters moved) after
    STEPS AdamW steps."""
    x, y = _data()
    model = MLP(SIZES, seed=seed)
    start = model.flat.copy()
    batches = np.random.default_rng(seed).integers(0, len(x), (STEPS, BATCH))
    if mode == "torch":
        import torch

        param = torch.from_numpy(start.copy()).to(torch.bfloat16)
        opt = torch.optim.AdamW([param], **OPTIONS)
        for rows in batches:
            model.flat[:] = param.float().numpy()
            model.loss_and_grad(x[rows], y[rows])
            param.grad = torch.from_numpy(model.grad.copy()).to(torch.bfloat16)
            opt.step()
        model.flat[:] = param.float().numpy()
    else:
        dtype, options = MODES[mode]
        param = model.flat if dtype == np.float32 else start.astype(dtype)
        opt = fastopt.AdamW([param], **OPTIONS, **options)
        for rows in batches:
            if param is not model.flat:
                model.flat[:] = param.astype(np.float32)
            model.loss_and_grad(x[rows], y[rows])
            opt.step([model.grad if dtype == np.float32 else model.grad.astype(dtype)])
        model.flat[:] = param.astype(np.float32)
    loss = model.loss_and_grad(x, y)
    return loss, float(np.linalg.norm(model.flat.astype(np.float64) - start))


@pytest.fixture(scope="module")
def runs():
    results = {mode: train(mode) for mode in MODES}
    results["float32, seed 1"] = train("float32", seed=1)
    results["torch bf16"] = train("torch") if _has_torch() else None
    return results


def _has_torch() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def _bound(runs) -> float:
    """Within seed noise: float32's loss times max(1.2, 1.15 x the ratio another seed gives)."""
    base, other = runs["float32"][0], runs["float32, seed 1"][0]
    seed_ratio = max(other / base, base / other)
    return max(1.2, 1.15 * seed_ratio)


@pytest.mark.parametrize("mode", GOOD)
def test_good_modes_train_like_float32(runs, mode):
    """Measured (2026-12-01): loss ratios 1.004 (stochastic), 1.006 (Kahan), 0.88 and 0.82
    (8-bit moments) against a bound of 1.35 (another seed: 0.85)."""
    loss, _ = runs[mode]
    assert loss / runs["float32"][0] <= _bound(runs), (loss, runs["float32"][0])


def _moved_like_float32(runs, mode, within=0.03):
    moved = runs[mode][1] / runs["float32"][1]
    assert 1 - within <= moved <= 1 + within, moved


@pytest.mark.parametrize("mode", ["bf16 stochastic", "bf16 kahan"])
def test_parameters_move_as_in_float32(runs, mode):
    """Measured: 1.003 (stochastic), 0.996 (Kahan)."""
    _moved_like_float32(runs, mode)


@pytest.mark.parametrize("mode", ["f32 8-bit moments", "bf16 8-bit moments"])
def test_8bit_parameters_move_as_in_float32(runs, mode):
    """Measured: 1.035 (bfloat16 parameters); quantised moments add their noise to the path,
    so the band is 5% (round to nearest moves 0.91-0.94: outside it). Before positive second
    moments were kept off the unsigned code's 0, these moved 30x as far."""
    _moved_like_float32(runs, mode, within=0.05)


@pytest.mark.parametrize("mode", ["bf16 nearest", "torch bf16"])
def test_round_to_nearest_stalls(runs, mode):
    """Measured: fastopt nearest 2.79x float32's loss, distance 0.91x."""
    if runs[mode] is None:
        pytest.skip("torch is not installed")
    loss, moved = runs[mode]
    base_loss, base_moved = runs["float32"]
    assert loss >= 2 * base_loss, (loss, base_loss)
    assert moved / base_moved < 0.99
