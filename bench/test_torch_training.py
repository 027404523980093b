"""A torch CPU training step with fastopt.torch against torch.optim's for-loop, foreach and
fused paths: the optimizer step alone and the whole step (zero_grad, forward, backward, step).

    pytest bench/test_torch_training.py --benchmark-only

The model (``fastopt.bench_torch.FULL``): 50 Linear layers of 448×448 with biases and leaky ReLUs,
100 float32 tensors, ~10^7 parameters, batch 16. Each case trains a fresh copy of it.
"""

import pytest

torch = pytest.importorskip("torch")

from fastopt import bench, bench_torch  # noqa: E402 (needs torch)


@pytest.mark.parametrize("impl", ["fastopt", *bench_torch.TORCH_PATHS])
@pytest.mark.parametrize("case", bench_torch.CASES)
@pytest.mark.parametrize("name", list(bench.ACCESS))
def test_torch_model(benchmark, name, case, impl):
    shape = bench_torch.FULL
    calls = bench_torch.contender(name, impl, shape, *bench_torch.batch(shape))
    if calls is None:
        pytest.skip(f"torch.optim.{name} has no {impl} CPU path")
    benchmark.group = f"{name} {case}, {shape.layers} layers, {shape.parameters:,} parameters"
    benchmark(calls[case])
