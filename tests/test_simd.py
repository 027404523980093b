"""Every SIMD variant of the kernels gives bitwise the same results.

Each variant runs in its own process (FASTOPT_SIMD chooses it at import), trains every
configuration of conftest.CONFIGS in float32 and float64, every rule in every storage mode of
conftest.STORAGE_MODES, and takes gradient norms; the results must be identical to the last
bit across variants.
"""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fastopt
from fastopt._kernels import built_variants, kernels

RUNNABLE = [v for v in kernels.cpu_variants() if v in built_variants()]

SCRIPT = r"""
import sys
import numpy as np
import fastopt
sys.path.insert(0, sys.argv[2])
from conftest import CONFIGS, PER_CLASS, STORAGE_MODES, given, refuses

rng = np.random.default_rng(0)
shapes = [(3, 5), (), (4099,), (70001,)]
out = {"variant": np.array(fastopt.config()["simd"])}
for dtype in (np.float32, np.float64):
    for config in CONFIGS:
        params = [np.array(rng.standard_normal(s), dtype=dtype) for s in shapes]
        opt = config.make(fastopt, params)
        for t in range(1, 16):
            grads = [np.array(rng.standard_normal(s), dtype=dtype) for s in shapes]
            opt.step(given(config.name, grads, t), max_norm=5.0)
        for i, p in enumerate(params):
            out[f"{config.id}-{np.dtype(dtype).name}-{i}"] = p
    grads = [np.array(rng.standard_normal(s), dtype=dtype) for s in shapes]
    for norm_type in (1.0, 2.0, float("inf")):
        out[f"norm-{norm_type}-{np.dtype(dtype).name}"] = np.array(fastopt.grad_norm(grads, norm_type))
for mode in STORAGE_MODES:
    param_dtype, grad_dtype = mode.dtypes()
    for config in PER_CLASS:
        if refuses(config, mode.options):  # SparseAdam in 8 bits (test_storage.py)
            continue
        params = [rng.standard_normal(s).astype(param_dtype) for s in shapes]
        opt = config.make(fastopt, params, **mode.options)
        for t in range(1, 9):
            grads = [rng.standard_normal(s).astype(grad_dtype) for s in shapes]
            opt.step(given(config.name, grads, t), max_norm=5.0)
        for i, p in enumerate(params):
            out[f"{config.id}-{mode.id}-{i}"] = p.reshape(-1).view(np.uint8)
np.savez(sys.argv[1], **out)
"""


def run_variant(variant, tmp_path):
    out = tmp_path / f"{variant}.npz"
    env = {**os.environ, "FASTOPT_SIMD": variant}
    subprocess.run([sys.executable, "-c", SCRIPT, str(out), str(Path(__file__).parent)],
                   env=env, check=True, cwd=tmp_path)
    return dict(np.load(out))


@pytest.mark.skipif(len(RUNNABLE) < 2, reason="this CPU or build has one SIMD variant only")
def test_variants_are_bitwise_identical(tmp_path):
    results = {v: run_variant(v, tmp_path) for v in RUNNABLE}
    first = RUNNABLE[0]
    for variant, result in results.items():
        assert str(result.pop("variant")) == variant
    keys = results[first].keys()
    assert len(keys) > 100
    for variant in RUNNABLE[1:]:
        assert results[variant].keys() == keys
        for key in keys:
            np.testing.assert_array_equal(results[variant][key], results[first][key],
                                          err_msg=f"{variant} vs {first}: {key}")


def test_the_widest_runnable_variant_is_chosen_by_default():
    if "FASTOPT_SIMD" not in os.environ:
        assert fastopt.config()["simd"] == RUNNABLE[-1]


@pytest.mark.parametrize("request_", ["sse9", "avx512" if "avx512" not in RUNNABLE else "nonsense"])
def test_unknown_or_unsupported_variant_is_refused(request_, tmp_path):
    env = {**os.environ, "FASTOPT_SIMD": request_}
    proc = subprocess.run([sys.executable, "-c", "import fastopt"], env=env, cwd=tmp_path,
                          capture_output=True, text=True)
    assert proc.returncode != 0
    assert "FASTOPT_SIMD" in proc.stderr and "ImportError" in proc.stderr
