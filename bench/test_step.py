"""Step time of fastopt against the NumPy reference and torch's fastest CPU path.

    pytest bench --benchmark-only --benchmark-group-by=param:case

Cases: one flat tensor of 10^3 .. 10^7 float32 elements per optimizer; a model-shaped list of
200 tensors (~2·10^6 parameters) against the same parameters packed as one segment.
"""

import numpy as np
import pytest
import fastopt
from fastopt import reference
from fastopt.bench import cases, model_shaped, optimizers

OPTIMIZERS = list(optimizers.NAMES)
SIZES = [10**3, 10**5, 10**6, 10**7]


def _pair(size, dtype=np.float32):
    rng = np.random.default_rng(0)
    return rng.standard_normal(size).astype(dtype), rng.standard_normal(size).astype(dtype)


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("name", OPTIMIZERS)
@pytest.mark.parametrize("impl", ["fastopt", "numpy", "torch"])
def test_single_tensor(benchmark, impl, name, size):
    param, grad = _pair(size)
    benchmark.group = f"{name} {size:.0e}"
    if impl == "torch":
        step = cases.torch_step(name, param, grad)
        if step is None:
            pytest.skip(f"torch is not installed or has no {name}")
        benchmark(step[0])
        return
    module = fastopt if impl == "fastopt" else reference
    opt = getattr(module, name)([param], **optimizers.OPTIONS[name])
    grads = [grad]
    benchmark(opt.step, grads)


@pytest.mark.parametrize("layout", ["200 tensors", "one segment", "torch fused"])
def test_model_shaped(benchmark, layout):
    shapes = model_shaped.model_shapes()
    rng = np.random.default_rng(1)
    params = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    grads = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    benchmark.group = "Adam, 200 tensors, 2e6 parameters"
    if layout == "200 tensors":
        opt = fastopt.Adam(params)
        benchmark(opt.step, grads)
    elif layout == "one segment":
        flat, _ = fastopt.flatten(params)
        flat_grad, _ = fastopt.flatten(grads)
        opt = fastopt.Adam([flat])
        benchmark(opt.step, [flat_grad])
    else:
        torch = pytest.importorskip("torch")
        tensors = [torch.from_numpy(p).requires_grad_() for p in params]
        for t, g in zip(tensors, grads):
            t.grad = torch.from_numpy(g)
        benchmark(torch.optim.Adam(tensors, fused=True).step)
