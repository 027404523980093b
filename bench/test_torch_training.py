"""A torch CPU training step with fastopt.torch against torch.optim's for-loop, foreach and
fused paths: the optimizer step alone and the whole step (zero_grad, forward, backward, step).

    pytest bench/test_torch_training.py --benchmark-only

The model (``fastopt.bench.torch_training.FULL``): 50 Linear layers of 448×448 with biases and
leaky ReLUs, 100 float32 tensors, ~10^7 parameters, batch 16. Each case trains a fresh copy of
it. Every optimizer of fastopt.torch is timed; torch's paths only where torch.optim has it.
"""

import pytest

torch = pytest.importorskip("torch")

import fastopt.torch  # noqa: E402 (needs torch)
from fastopt.bench import torch_training  # noqa: E402


@pytest.mark.parametrize("impl", ["fastopt", *torch_training.TORCH_PATHS])
@pytest.mark.parametrize("case", torch_training.CASES)
@pytest.mark.parametrize("name", list(fastopt.torch.OPTIMIZERS))
def test_torch_model(benchmark, name, case, impl):
    shape = torch_training.FULL
    calls = torch_training.contender(name, impl, shape, *torch_training.batch(shape))
    if calls is None:
        pytest.skip(f"torch.optim has no {name} or no {impl} CPU path for it")
    benchmark.group = f"{name} {case}, {shape.layers} layers, {shape.parameters:,} parameters"
    benchmark(calls[case])
