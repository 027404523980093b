"""fastopt.torch under the torch ecosystem's own tools, each against torch.optim doing the same.

Every tool here assumes what torch.optim gives it: parameters in the storage torch gave them,
gradients read where autograd or DDP put them, ``state`` a mapping of tensors the tool may read
and write. The old packing design (parameters re-pointed into one flat buffer of fastopt's)
broke each of these. Proven here, each run once with ``torch.optim.X`` and once with
``fastopt.torch.X`` over the same model, data and steps:

1. DistributedDataParallel (gloo, 2 ranks on 127.0.0.1, through ``distributed.run``): with
   ``find_unused_parameters=True`` and parameters used on rank 0 only, on even steps only, or
   never; plain, with ``gradient_as_bucket_view`` True and False (and ``no_sync`` gradient
   accumulation). The ranks end bitwise identical, and equal to torch.optim's run (parameters
   and state, step counts exactly) within the tolerances below.
2. torch.distributed.checkpoint: ``get_optimizer_state_dict`` of a fresh optimizer (DCP
   initialises it by a step with zero gradients and lr 0) is torch's; ``dcp.save`` after some
   steps, ``dcp.load`` + ``set_optimizer_state_dict`` into a fresh model and optimizer, then
   more steps: bitwise the uninterrupted run for fastopt -> fastopt, torch's within tolerance
   for torch.optim -> fastopt and fastopt -> torch.optim; a run that loads only the model
   differs. All eight classes, float32 and float64. Single process: DCP saves and loads
   without a process group.
3. ZeroRedundancyOptimizer(optimizer_class=fastopt.torch.X) over DDP (gloo, 2 ranks), with
   ``parameters_as_bucket_view`` False and True (ZeRO re-points the parameters into its buckets
   after building the local optimizer): trains as with torch.optim.X; its consolidated state
   dict is torch's; loaded into a fresh ZeRO (from its own file or torch.optim's) it resumes
   the trajectory; without loading it does not.
4. ``torch.save`` of a submodule's state dict, of a parameter, of the model's and the
   optimizer's state dicts, of one state tensor and of one parameter's state entry: the same
   number of bytes as with torch.optim, and read back by ``torch.load(weights_only=True)``.
   ``torch.save(model)`` (and of model and optimizer together) reloads and trains.
5. safetensors (accelerate's default checkpoint format): ``save_model``/``load_model`` of a
   model with tied weights; ``save_file`` of the optimizer's state tensors.
6. ``torch.nn.utils.parametrize.register_parametrization`` after the optimizer was made and
   stepped: ``orthogonal`` (by ``set_`` and, with ``swap_module_params_on_conversion``, by
   ``swap_tensors``) and a custom one with ``right_inverse`` (all replace the parameter's
   memory), one without (memory kept); and ``prune.l1_unstructured`` (a mask hook over
   ``weight_orig``).
7. Smaller ones: ``torch.compile`` of the model (dynamo and AOTAutograd, ``aot_eager``
   backend: inductor's C++ build costs ~20 s here); ``torch.amp.GradScaler`` with CPU autocast,
   ``unscale_``, ``clip_grad_norm_`` and a skipped non-finite step; ``swa_utils``
   (``AveragedModel`` EMA, ``SWALR``, ``update_bn``); the optimizer stepped inside backward
   from ``register_post_accumulate_grad_hook`` (per-parameter optimizers); freezing a layer
   mid-training, with ``zero_grad`` setting gradients to None or to zeros; tools that replace a
   parameter's memory mid-training: ``model.share_memory()``,
   ``torch.nn.utils.vector_to_parameters`` and ``model.to(memory_format=channels_last)``.

And the launcher (``tests/distributed.py``) itself: results in rank order under torchrun's
environment; a rank that raises, or dies, or hangs fails the call quickly with the rank's
traceback (or stacks), the other ranks killed.

Tolerances (fastopt.torch against torch.optim): ``conftest.assert_close`` at 1e-4 in float32
and 1e-11 in float64; fastopt against fastopt (resumed against uninterrupted, rank against
rank): bitwise (``torch.equal``).
"""

from __future__ import annotations

import collections

import contextlib
import copy
import functools
import os
import signal
import time

import pytest

torch = pytest.importorskip("torch")

import torch.distributed as dist  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

import fastopt  # noqa: E402
import fastopt.torch as ft  # noqa: E402

import distributed  # noqa: E402
from conftest import assert_close, scaled_error  # noqa: E402

RTOL = {torch.float32: 1e-4, torch.float64: 1e-11}
DTYPES = [torch.float32, torch.float64]
DTYPE_IDS = ["f32", "f64"]
IMPLS = {"torch": torch.optim, "fastopt": ft}

# One stateful configuration per class (all eight), options on where the class has them.
CONFIGS = {
    "sgd": ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01)),
    "adam": ("Adam", dict(lr=0.01, amsgrad=True, weight_decay=0.01)),
    "adamw": ("AdamW", dict(lr=0.01, weight_decay=0.1)),
    "adagrad": ("Adagrad", dict(lr=0.05, lr_decay=0.01, initial_accumulator_value=0.1)),
    "rmsprop": ("RMSprop", dict(lr=0.01, centered=True, momentum=0.5)),
    "adadelta": ("Adadelta", dict(lr=0.5, weight_decay=0.01)),
    "adamax": ("Adamax", dict(lr=0.01)),
    "nadam": ("NAdam", dict(lr=0.01, decoupled_weight_decay=True, weight_decay=0.01)),
}
CONFIG_IDS = list(CONFIGS)

pytestmark = pytest.mark.filterwarnings(
    # DCP without a process group says it saves/loads in a single process: that is the intent.
    "ignore:torch.distributed is disabled:UserWarning",
)
needs_distributed = pytest.mark.skipif(not dist.is_available(),
                                       reason="this torch is built without torch.distributed")


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """These models are tiny: torch's two-thread team only waits for a core, and with the
    other core busy (the normal case on a shared machine) each small op then takes a
    scheduler slice (a 10-step run took 1.3 s instead of 10 ms). The ranks run with
    OMP_NUM_THREADS=1, as under torchrun."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def make_opt(impl, config, params, **overrides):
    name, kwargs = CONFIGS[config]
    return getattr(IMPLS[impl], name)(params, **{**kwargs, **overrides})


# ------------------------------------------------------------------------------- helpers


def mlp(dtype=torch.float32, seed=0, width=32):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, width), nn.Tanh(), nn.Linear(width, width), nn.Tanh(),
                         nn.Linear(width, 3)).to(dtype)


def batch(k, dtype=torch.float32, rank=0, micro=0, n=16):
    """Mini-batch ``k`` of a rank (and micro-batch): deterministic, different for each."""
    g = torch.Generator().manual_seed(1000 * rank + 10 * k + micro + 1)
    return torch.randn(n, 6, generator=g, dtype=dtype), torch.randn(n, 3, generator=g, dtype=dtype)


def train(model, opt, start, stop, dtype=torch.float32, rank=0):
    for k in range(start, stop):
        x, y = batch(k, dtype, rank)
        opt.zero_grad()
        F.mse_loss(model(x), y).backward()
        opt.step()


def params_of(model):
    return [p.detach().clone() for p in model.parameters()]


def assert_params_close(actual, desired, rtol, what=""):
    assert len(actual) == len(desired), what
    for k, (a, d) in enumerate(zip(actual, desired)):
        assert (a.dtype, a.shape) == (d.dtype, d.shape), f"{what}: parameter {k}"
        assert_close(a.numpy(), d.numpy(), rtol, f"{what}: parameter {k}")


def assert_params_equal(actual, desired, what=""):
    assert len(actual) == len(desired), what
    for k, (a, d) in enumerate(zip(actual, desired)):
        if not torch.equal(a, d):
            diff = (a.double() - d.double()).abs()
            raise AssertionError(f"{what}: parameter {k} differs in {int((diff > 0).sum())} of "
                                 f"{a.numel()} elements, max |diff| {diff.max().item():.3g}")


def assert_params_differ(actual, desired, rtol, what=""):
    """Far apart: more than 100 times the tolerance (so that the closeness asserted elsewhere
    could not have held by chance)."""
    worst = max(scaled_error(a.numpy(), d.numpy()) for a, d in zip(actual, desired))
    assert worst > 100 * rtol, f"{what}: expected to differ, but max scaled error is {worst:.3g}"


def snapshot(sd):
    """A state dict's copy (fastopt's tensors are live views of its buffers)."""
    return copy.deepcopy(sd)


def assert_state_dicts_match(actual, desired, rtol=None, what="state_dict"):
    """Same parameters with state, same keys, same dtypes and shapes, step counts and
    hyper-parameters equal; tensors bitwise equal (``rtol=None``) or close."""
    sa, sd = actual["state"], desired["state"]
    assert sorted(sa, key=str) == sorted(sd, key=str), (
        f"{what}: state for {sorted(sa, key=str)}, expected {sorted(sd, key=str)}")
    for key in sd:
        ea, ed = sa[key], sd[key]
        assert set(ea) == set(ed), f"{what}[{key!r}]: keys {sorted(ea)} != {sorted(ed)}"
        for name, d in ed.items():
            a, where = ea[name], f"{what}[{key!r}][{name!r}]"
            if not torch.is_tensor(d):
                assert a == d, f"{where}: {a!r} != {d!r}"
                continue
            assert torch.is_tensor(a), f"{where}: {type(a).__name__}, expected a tensor"
            assert (a.dtype, a.shape) == (d.dtype, d.shape), (
                f"{where}: {a.dtype} {tuple(a.shape)}, expected {d.dtype} {tuple(d.shape)}")
            if name == "step" or rtol is None:
                assert torch.equal(a, d), f"{where}: {a} != {d}" if a.numel() == 1 else where
            else:
                assert_close(a.numpy(), d.numpy(), rtol, where)
    ga, gd = actual["param_groups"], desired["param_groups"]
    assert len(ga) == len(gd), f"{what}: {len(ga)} param_groups, expected {len(gd)}"
    for g, (a, d) in enumerate(zip(ga, gd)):
        assert a == d, f"{what}: param_groups[{g}] {a} != {d}"


# ------------------------------------------------------------------------------- the launcher


def test_launcher_returns_each_ranks_result_in_rank_order_under_torchruns_environment():
    # Standard-library callables keep these ranks free of torch (they start in ~0.3 s).
    expression = ("{k: __import__('os').environ[k] for k in ('RANK', 'WORLD_SIZE', "
                  "'LOCAL_RANK', 'LOCAL_WORLD_SIZE', 'MASTER_ADDR', 'OMP_NUM_THREADS')}")
    results = distributed.run(3, eval, expression, backend=None, timeout=60)
    assert [r["RANK"] for r in results] == ["0", "1", "2"]
    for rank, env in enumerate(results):
        assert env["LOCAL_RANK"] == str(rank)
        assert env["WORLD_SIZE"] == env["LOCAL_WORLD_SIZE"] == "3"
        assert env["MASTER_ADDR"] == "127.0.0.1"
        assert env["OMP_NUM_THREADS"] == os.environ.get("OMP_NUM_THREADS", "1")


def test_launcher_fails_with_the_raising_ranks_traceback_and_kills_the_others():
    code = ("import os, time\n"
            "if os.environ['RANK'] == '1':\n"
            "    raise ValueError('rank one gives up')\n"
            "time.sleep(600)  # rank 0: as if blocked in a collective with the dead rank\n")
    start = time.monotonic()
    with pytest.raises(distributed.DistributedError) as info:
        distributed.run(2, exec, code, backend=None, timeout=60, grace=0.5)
    message = str(info.value)
    assert time.monotonic() - start < 30
    assert "--- rank 1 raised:" in message and "ValueError: rank one gives up" in message
    assert "--- rank 0: killed: still running after another rank failed" in message
    if hasattr(signal, "SIGUSR1"):  # where rank 0 was: its stack, dumped by faulthandler
        assert 'File "<string>", line 4' in message


def test_launcher_reports_a_rank_that_dies_without_a_word():
    code = "import os\nif os.environ['RANK'] == '0':\n    os._exit(7)\n"
    with pytest.raises(distributed.DistributedError, match="rank 0 exited with code 7"):
        distributed.run(2, exec, code, backend=None, timeout=60, grace=0.5)


def test_launcher_times_out_and_shows_where_each_rank_was():
    start = time.monotonic()
    with pytest.raises(distributed.DistributedError) as info:
        distributed.run(2, exec, "import time\ntime.sleep(600)\n", backend=None, timeout=3)
    message = str(info.value)
    assert time.monotonic() - start < 20
    assert "timed out after 3 s" in message
    for rank in (0, 1):
        assert f"--- rank {rank}: still running after 3 s" in message
    if hasattr(signal, "SIGUSR1"):
        assert message.count('File "<string>", line 2') == 2


# ------------------------------------------------------------------------------- 1. DDP


class Branchy(nn.Module):
    """A trunk and a head used by every rank at every step, and (``branches=True``) three
    parameters DDP's unused-parameter search is for: ``rank0_only`` enters rank 0's forward
    only (locally unused on rank 1, whose gradient is then rank 0's all-reduced), ``even_steps``
    every rank's on even steps only (globally unused on odd steps: no gradient, no step, its
    step count half the others'), ``never`` no forward at all (never a gradient, no state).
    With ``branches=False`` every parameter is used everywhere (plain DDP)."""

    def __init__(self):
        super().__init__()
        self.trunk = nn.Linear(6, 16)
        self.rank0_only = nn.Linear(16, 16)
        self.even_steps = nn.Linear(16, 16)
        self.never = nn.Linear(16, 3)
        self.head = nn.Linear(16, 3)

    def forward(self, x, rank, step, branches):
        h = torch.tanh(self.trunk(x))
        if not branches or rank == 0:
            h = h + torch.tanh(self.rank0_only(h))
        if not branches or step % 2 == 0:
            h = h + torch.tanh(self.even_steps(h))
        out = self.head(h)
        return out if branches else out + self.never(h)


DDP_CONFIGS = ["adam", "sgd", "rmsprop"]
DDP_STEPS = 12


def ddp_rank(find_unused, bucket_view, set_to_none, accumulate):
    """One rank: every DDP_CONFIGS configuration, in both dtypes, under torch.optim and
    fastopt.torch; returns the final parameters and optimizer state of each run."""
    from torch.nn.parallel import DistributedDataParallel as DDP

    rank = dist.get_rank()
    out = {"fastopt": fastopt.__file__}
    for dtype in DTYPES:
        for config in DDP_CONFIGS:
            for impl in IMPLS:
                torch.manual_seed(0)
                model = Branchy().to(dtype)
                ddp = DDP(model, find_unused_parameters=find_unused,
                          gradient_as_bucket_view=bucket_view)
                opt = make_opt(impl, config, ddp.parameters())
                for k in range(DDP_STEPS):
                    opt.zero_grad(set_to_none=set_to_none)
                    for micro in range(2 if accumulate else 1):
                        x, y = batch(k, dtype, rank, micro)
                        sync = ddp.no_sync() if accumulate and micro == 0 else contextlib.nullcontext()
                        with sync:
                            F.mse_loss(ddp(x, rank, k, find_unused), y).backward()
                    opt.step()
                storages = {p.grad.untyped_storage().data_ptr() for p in model.parameters()
                            if p.grad is not None}
                out[dtype, config, impl] = {"params": params_of(model),
                                            "state": snapshot(opt.state_dict()),
                                            "grad storages": len(storages)}
    return out


def check_ddp(results, find_unused, bucket_view=False):
    assert [r["fastopt"] for r in results] == [fastopt.__file__] * 2  # the ranks ran this fastopt
    names = [name for name, _ in Branchy().named_parameters()]
    for dtype in DTYPES:
        for config in DDP_CONFIGS:
            what = f"{config} {dtype}"
            runs = {impl: [r[dtype, config, impl] for r in results] for impl in IMPLS}
            for impl, (rank0, rank1) in runs.items():  # the ranks agree to the bit
                assert_params_equal(rank1["params"], rank0["params"], f"{what} {impl}: rank 1 vs 0")
                assert_state_dicts_match(rank1["state"], rank0["state"], None,
                                         f"{what} {impl}: rank 1 vs 0")
            ours, ref = runs["fastopt"][0], runs["torch"][0]
            assert_params_close(ours["params"], ref["params"], RTOL[dtype], what)
            assert_state_dicts_match(ours["state"], ref["state"], RTOL[dtype], what)
            torch.manual_seed(0)
            initial = params_of(Branchy().to(dtype))
            moved = [not torch.equal(p, q) for p, q in zip(ours["params"], initial)]
            if not find_unused:
                assert all(moved), what
                # The premise: with bucket views every gradient lies in DDP's one bucket.
                storages = {r[dtype, config, impl]["grad storages"] for r in results
                            for impl in IMPLS}
                assert storages == {1 if bucket_view else len(names)}, what
                continue
            # The premises of the unused-parameter case, seen in torch's run (and fastopt's).
            state = ref["state"]["state"]
            assert moved == [name.split(".")[0] != "never" for name in names], what
            assert {names[i].split(".")[0] for i in range(len(names)) if i not in state} == {"never"}
            if config != "sgd":
                steps = {names[i]: float(s["step"]) for i, s in state.items()}
                assert steps["even_steps.weight"] == DDP_STEPS / 2, what
                assert steps["rank0_only.weight"] == steps["trunk.weight"] == DDP_STEPS, what


@needs_distributed
def test_ddp_find_unused_parameters():
    results = distributed.run(2, functools.partial(
        ddp_rank, find_unused=True, bucket_view=False, set_to_none=True, accumulate=False))
    check_ddp(results, find_unused=True)


@needs_distributed
@pytest.mark.parametrize("bucket_view", [True, False], ids=["bucket_view", "no_bucket_view"])
def test_ddp_gradient_as_bucket_view(bucket_view):
    """Gradient accumulation over two micro-batches (the first under ``no_sync``); with
    bucket views the gradients are zeroed in place (``set_to_none=False``), so they stay views
    of DDP's buckets from step to step."""
    results = distributed.run(2, functools.partial(
        ddp_rank, find_unused=False, bucket_view=bucket_view, set_to_none=not bucket_view,
        accumulate=True))
    check_ddp(results, find_unused=False, bucket_view=bucket_view)


# ------------------------------------------------------------------------------- 2. DCP


def dcp_api():
    dcp = pytest.importorskip("torch.distributed.checkpoint")
    from torch.distributed.checkpoint import state_dict as sd

    return dcp, sd


@needs_distributed
@pytest.mark.parametrize("config", CONFIG_IDS)
def test_dcp_get_optimizer_state_dict_of_a_fresh_optimizer(config):
    """DCP fills a fresh optimizer's state by a step with zero gradients and lr 0: the state is
    torch's, the parameters unchanged, the gradients None again, lr restored."""
    _, sd = dcp_api()
    got = {}
    for impl in IMPLS:
        model = mlp(torch.float64)
        before = params_of(model)
        opt = make_opt(impl, config, model.parameters())
        got[impl] = snapshot(sd.get_optimizer_state_dict(model, opt))
        assert_params_equal(params_of(model), before, f"{impl}: parameters after DCP's init")
        assert all(p.grad is None for p in model.parameters())
        assert opt.param_groups[0]["lr"] == CONFIGS[config][1]["lr"]
    assert got["torch"]["state"] or config == "sgd"  # the premise: DCP did make state
    assert set(got["torch"]["state"]) <= {n for n, _ in mlp().named_parameters()}
    assert_state_dicts_match(got["fastopt"], got["torch"], RTOL[torch.float64])


DCP_K, DCP_M = 5, 5


def dcp_save(model, opt, path):
    dcp, sd = dcp_api()
    dcp.save({"model": sd.get_model_state_dict(model),
              "optim": sd.get_optimizer_state_dict(model, opt)}, checkpoint_id=str(path))


def dcp_restore(model, opt, path, optimizer=True):
    """DCP's resume: the state dicts to fill (the optimizer's is live, as torch.optim's:
    ``dcp.load`` writes into its state in place), then ``set_*_state_dict``. With
    ``optimizer=False`` only the model is loaded."""
    dcp, sd = dcp_api()
    state = {"model": sd.get_model_state_dict(model)}
    if optimizer:
        state["optim"] = sd.get_optimizer_state_dict(model, opt)
    dcp.load(state, checkpoint_id=str(path))
    sd.set_model_state_dict(model, state["model"])
    if optimizer:
        sd.set_optimizer_state_dict(model, opt, state["optim"])


def dcp_resumed(src, dst, config, dtype, path, optimizer=True):
    """DCP_K steps under ``src``, saved; a fresh model (other initial values: loading must put
    the trained ones in) and ``dst`` optimizer restored from it, DCP_M more steps."""
    model = mlp(dtype)
    opt = make_opt(src, config, model.parameters())
    train(model, opt, 0, DCP_K, dtype)
    dcp_save(model, opt, path)
    resumed = mlp(dtype, seed=1)
    ropt = make_opt(dst, config, resumed.parameters())
    dcp_restore(resumed, ropt, path, optimizer)
    train(resumed, ropt, DCP_K, DCP_K + DCP_M, dtype)
    return params_of(resumed), snapshot(ropt.state_dict())


def uninterrupted(impl, config, dtype):
    model = mlp(dtype)
    opt = make_opt(impl, config, model.parameters())
    train(model, opt, 0, DCP_K + DCP_M, dtype)
    return params_of(model), snapshot(opt.state_dict())


@needs_distributed
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("config", CONFIG_IDS)
@pytest.mark.parametrize("src,dst", [("fastopt", "fastopt"), ("torch", "fastopt"),
                                     ("fastopt", "torch")], ids=lambda s: s)
def test_dcp_save_load_resumes(src, dst, config, dtype, tmp_path):
    """fastopt -> fastopt: bitwise the uninterrupted fastopt run. torch.optim -> fastopt:
    torch's uninterrupted run. fastopt -> torch.optim: torch.optim -> torch.optim (not the
    uninterrupted run: torch's load_state_dict casts NAdam's float32 ``mu_product`` to a
    float64 parameter's dtype, so torch itself resumes another float64 trajectory, 1e-10 away;
    fastopt keeps it in float32 and resumes the uninterrupted one)."""
    what = f"{config} {dtype} {src} -> {dst}"
    params, state = dcp_resumed(src, dst, config, dtype, tmp_path / "ckpt")
    if src == dst == "fastopt":
        ref_params, ref_state = uninterrupted("fastopt", config, dtype)
        assert_params_equal(params, ref_params, what)
        assert_state_dicts_match(state, ref_state, None, what)
        # Without the optimizer's state the run is another one (so the above proves loading).
        other, _ = dcp_resumed(src, dst, config, dtype, tmp_path / "model-only", optimizer=False)
        assert_params_differ(other, params, RTOL[dtype], f"{what} (model only)")
        return
    if dst == "fastopt":
        ref_params, ref_state = uninterrupted("torch", config, dtype)
    else:
        ref_params, ref_state = dcp_resumed("torch", "torch", config, dtype, tmp_path / "ref")
    assert_params_close(params, ref_params, RTOL[dtype], what)
    assert_state_dicts_match(state, ref_state, RTOL[dtype], what)


# ------------------------------------------------------------------------------- 3. ZeRO


ZERO_CONFIGS = ["adam", "nadam"]
ZERO_K, ZERO_M = 4, 4


def zero_rank(bucket_view, ckpt_dir):
    """One rank: DDP + ZeroRedundancyOptimizer(optimizer_class=torch.optim.X or fastopt.torch.X)
    for each ZERO_CONFIGS configuration and dtype: trained ZERO_K steps, consolidated and saved
    (by rank 0), trained ZERO_M more (uninterrupted); then fresh models and optimizers loaded
    from each implementation's file (resumed) or from the model's weights only (not loaded),
    trained the same ZERO_M steps."""
    from torch.distributed.optim import ZeroRedundancyOptimizer
    from torch.nn.parallel import DistributedDataParallel as DDP

    rank = dist.get_rank()

    def fresh(impl, config, dtype, seed):
        model = mlp(dtype, seed)
        ddp = DDP(model)
        name, kwargs = CONFIGS[config]
        zero = ZeroRedundancyOptimizer(ddp.parameters(), optimizer_class=getattr(IMPLS[impl], name),
                                       parameters_as_bucket_view=bucket_view, **kwargs)
        assert isinstance(zero.optim, getattr(IMPLS[impl], name))
        assert 0 < len(zero.optim.param_groups[0]["params"]) < len(list(model.parameters()))
        if bucket_view:  # the premise: ZeRO moved every parameter into its buckets
            spans = [(b.data_ptr(), b.data_ptr() + b.numel() * b.element_size())
                     for b in zero._buckets[0]]
            assert all(any(lo <= p.data_ptr() < hi for lo, hi in spans)
                       for p in model.parameters())
        return model, ddp, zero

    out = {}
    for dtype in DTYPES:
        for config in ZERO_CONFIGS:
            path = {impl: os.path.join(ckpt_dir, f"{impl}-{config}-{str(dtype)[6:]}.pt")
                    for impl in IMPLS}
            for impl in IMPLS:
                model, ddp, zero = fresh(impl, config, dtype, 0)
                train(ddp, zero, 0, ZERO_K, dtype, rank)
                zero.consolidate_state_dict(to=0)
                if rank == 0:
                    torch.save({"model": model.state_dict(), "optim": zero.state_dict()},
                               path[impl])
                train(ddp, zero, ZERO_K, ZERO_K + ZERO_M, dtype, rank)
                out[dtype, config, impl, "uninterrupted"] = params_of(model)
            dist.barrier()  # the files are written
            for impl in IMPLS:
                for src in IMPLS:
                    ckpt = torch.load(path[src], weights_only=True)  # plain tensors and numbers
                    model, ddp, zero = fresh(impl, config, dtype, 1)
                    model.load_state_dict(ckpt["model"])
                    zero.load_state_dict(ckpt["optim"])
                    train(ddp, zero, ZERO_K, ZERO_K + ZERO_M, dtype, rank)
                    out[dtype, config, impl, "from " + src] = params_of(model)
                model, ddp, zero = fresh(impl, config, dtype, 1)
                model.load_state_dict(torch.load(path[impl], weights_only=True)["model"])
                train(ddp, zero, ZERO_K, ZERO_K + ZERO_M, dtype, rank)
                out[dtype, config, impl, "not loaded"] = params_of(model)
    return out


@needs_distributed
@pytest.mark.parametrize("bucket_view", [False, True], ids=["plain", "parameters_as_bucket_view"])
def test_zero_redundancy_optimizer(bucket_view, tmp_path):
    results = distributed.run(2, zero_rank, bucket_view, str(tmp_path))
    for key in results[0]:
        assert_params_equal(results[1][key], results[0][key], f"{key}: rank 1 vs rank 0")
    out = results[0]
    for dtype in DTYPES:
        for config in ZERO_CONFIGS:
            rtol, what = RTOL[dtype], f"{config} {dtype}"
            run = {key[2:]: value for key, value in out.items() if key[:2] == (dtype, config)}
            ref = run["torch", "uninterrupted"]
            assert_params_close(run["fastopt", "uninterrupted"], ref, rtol, f"{what}: trained")
            for impl in IMPLS:  # each resumes its own trajectory to the bit
                assert_params_equal(run[impl, "from " + impl], run[impl, "uninterrupted"],
                                    f"{what}: {impl} resumed from its own consolidated state")
                assert_params_differ(run[impl, "not loaded"], run[impl, "uninterrupted"], rtol,
                                     f"{what}: {impl} without loading the optimizer's state")
            assert_params_close(run["fastopt", "from torch"], ref, rtol, f"{what}: torch -> fastopt")
            assert_params_close(run["torch", "from fastopt"], ref, rtol, f"{what}: fastopt -> torch")
            saved = {impl: torch.load(tmp_path / f"{impl}-{config}-{str(dtype)[6:]}.pt",
                                      weights_only=True)["optim"] for impl in IMPLS}
            assert len(saved["torch"]["state"]) == len(list(mlp().parameters()))  # all ranks'
            assert_state_dicts_match(saved["fastopt"], saved["torch"], rtol,
                                     f"{what}: consolidated state dict")


# ------------------------------------------------------------------------------- 4. torch.save


class Normed(nn.Module):
    def __init__(self, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.inp = nn.Linear(6, 32)
        self.norm = nn.LayerNorm(32)
        self.out = nn.Linear(32, 3)

    def forward(self, x):
        return self.out(torch.tanh(self.norm(self.inp(x))))


SAVED = {
    "norm.state_dict()": lambda model, opt: model.norm.state_dict(),
    "norm.bias": lambda model, opt: model.norm.bias,
    "inp.weight": lambda model, opt: model.inp.weight,
    "model.state_dict()": lambda model, opt: model.state_dict(),
    "opt.state_dict()": lambda model, opt: opt.state_dict(),
    "opt.state[norm.weight]['exp_avg']": lambda model, opt: opt.state[model.norm.weight]["exp_avg"],
    "opt.state[norm.weight]": lambda model, opt: opt.state[model.norm.weight],
}


@pytest.mark.parametrize("what", SAVED)
def test_torch_save_is_torchs_size_and_loads_with_weights_only(what, tmp_path):
    """``torch.save(what)`` after the optimizer was built and stepped: as many bytes as with
    torch.optim (a LayerNorm's state dict was once 300 times larger: its tensors were views
    of one flat buffer, and torch.save writes whole storages), and what torch.optim's file
    holds ``torch.load``'s default (``weights_only=True``) reads back."""
    sizes, loaded = {}, {}
    for impl in IMPLS:
        model = Normed()
        opt = make_opt(impl, "adam", model.parameters())
        train(model, opt, 0, 3)
        obj = SAVED[what](model, opt)
        (tmp_path / impl).mkdir()
        path = tmp_path / impl / "saved.pt"  # the same name: a file's archive is named after it
        torch.save(obj, path)
        sizes[impl] = path.stat().st_size
        try:
            loaded[impl] = torch.load(path, weights_only=True)
        except Exception as error:  # noqa: BLE001 (asserted below, against torch's)
            loaded[impl] = error
    assert not isinstance(loaded["torch"], Exception)  # the premise
    if isinstance(loaded["fastopt"], Exception):
        raise AssertionError(f"torch.load(weights_only=True) of torch.save({what}) fails with "
                             f"fastopt (loads with torch.optim): {loaded['fastopt']}")
    if what == "opt.state[norm.weight]":
        # A parameter's entry is a dict subclass (writes into it reach the optimizer); pickled,
        # it is an OrderedDict, whose name the file holds where torch's has a plain dict.
        assert type(loaded["fastopt"]) is collections.OrderedDict
        assert abs(sizes["fastopt"] - sizes["torch"]) < 100, sizes
        assert loaded["fastopt"].keys() == loaded["torch"].keys()
        assert all(torch.allclose(loaded["fastopt"][k], v) for k, v in loaded["torch"].items())
    else:
        assert sizes["fastopt"] == sizes["torch"], (
            f"torch.save({what}): {sizes['fastopt']} bytes with fastopt, {sizes['torch']} with "
            "torch.optim")
    if what == "norm.state_dict()":
        assert all(torch.equal(loaded["fastopt"][k], v) for k, v in model.norm.state_dict().items())


def test_torch_save_of_the_model_and_of_model_and_optimizer_reload_and_train(tmp_path):
    got = {}
    for impl in IMPLS:
        model = Normed()
        opt = make_opt(impl, "adam", model.parameters())
        train(model, opt, 0, 4)
        torch.save(model, tmp_path / f"{impl}-model.pt")
        torch.save({"model": model, "optim": opt}, tmp_path / f"{impl}-both.pt")
        at_save = params_of(model)
        train(model, opt, 4, 8)

        reloaded = torch.load(tmp_path / f"{impl}-model.pt", weights_only=False)
        assert_params_equal(params_of(reloaded), at_save, f"{impl}: reloaded model")
        new_opt = make_opt(impl, "adam", reloaded.parameters())  # a new optimizer trains it
        train(reloaded, new_opt, 4, 8)

        both = torch.load(tmp_path / f"{impl}-both.pt", weights_only=False)
        assert type(both["optim"]) is type(opt)
        assert all(p is q for p, q in zip(both["optim"].param_groups[0]["params"],
                                          both["model"].parameters()))
        train(both["model"], both["optim"], 4, 8)
        assert_params_equal(params_of(both["model"]), params_of(model),
                            f"{impl}: model and optimizer reloaded vs never saved")
        got[impl] = params_of(reloaded), params_of(model)
        assert_params_differ(got[impl][0], got[impl][1], RTOL[torch.float32],
                             f"{impl}: a new optimizer vs the trained one")
    for k in range(2):
        assert_params_close(got["fastopt"][k], got["torch"][k], RTOL[torch.float32])


# ------------------------------------------------------------------------------- 5. safetensors


class TiedLM(nn.Module):
    """An embedding and an output layer sharing one Parameter (as language models tie them)."""

    def __init__(self, seed=0, vocab=40, dim=16):
        super().__init__()
        torch.manual_seed(seed)
        self.emb = nn.Embedding(vocab, dim)
        self.mix = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, vocab, bias=False)
        self.out.weight = self.emb.weight

    def forward(self, tokens):
        return self.out(torch.tanh(self.mix(self.emb(tokens))))


def train_lm(model, opt, start, stop):
    for k in range(start, stop):
        tokens = torch.randint(0, 40, (8, 9), generator=torch.Generator().manual_seed(k))
        opt.zero_grad()
        logits = model(tokens[:, :-1])
        F.cross_entropy(logits.reshape(-1, 40), tokens[:, 1:].reshape(-1)).backward()
        opt.step()


def test_safetensors_save_model_load_model_with_tied_weights(tmp_path):
    st = pytest.importorskip("safetensors.torch")
    got = {}
    for impl in IMPLS:
        model = TiedLM()
        opt = make_opt(impl, "adam", model.parameters())
        assert len(opt.param_groups[0]["params"]) == 3  # the tied weight once
        train_lm(model, opt, 0, 6)
        path = tmp_path / f"{impl}.safetensors"
        st.save_model(model, str(path))
        restored = TiedLM(seed=1)
        missing, unexpected = st.load_model(restored, str(path))
        assert restored.out.weight is restored.emb.weight  # still tied
        assert_params_equal(params_of(restored), params_of(model), f"{impl}: load_model")
        # and it trains on under a new optimizer
        train_lm(restored, make_opt(impl, "adam", restored.parameters()), 6, 9)
        got[impl] = (params_of(model), params_of(restored), path.stat().st_size,
                     sorted(missing), sorted(unexpected))
    assert_params_close(got["fastopt"][0], got["torch"][0], RTOL[torch.float32], "trained")
    assert_params_close(got["fastopt"][1], got["torch"][1], RTOL[torch.float32], "restored, trained")
    assert got["fastopt"][2:] == got["torch"][2:]  # file size, missing and unexpected keys


def test_safetensors_save_file_of_the_optimizer_state(tmp_path):
    """Tools that store optimizer state as safetensors refuse tensors that share memory; each
    state tensor (a view of fastopt's buffers) covers exactly its own bytes."""
    st = pytest.importorskip("safetensors.torch")
    flat = {}
    for impl in IMPLS:
        model = Normed()
        opt = make_opt(impl, "nadam", model.parameters())
        train(model, opt, 0, 3)
        flat[impl] = {f"{i}.{k}": v for i, s in opt.state_dict()["state"].items()
                      for k, v in s.items()}
        st.save_file(flat[impl], str(tmp_path / f"{impl}.safetensors"))
        back = st.load_file(str(tmp_path / f"{impl}.safetensors"))
        assert back.keys() == flat[impl].keys()
        assert all(torch.equal(back[k], v) and back[k].dtype == v.dtype
                   for k, v in flat[impl].items())
    assert flat["fastopt"].keys() == flat["torch"].keys()
    assert ((tmp_path / "fastopt.safetensors").stat().st_size
            == (tmp_path / "torch.safetensors").stat().st_size)


# ------------------------------------------------------------------------------- 6. parametrize


class Symmetric(nn.Module):
    """A custom parametrization without ``right_inverse``: the parameter keeps its memory."""

    def forward(self, X):
        return X.triu() + X.triu(1).transpose(-1, -2)


class Scaled(nn.Module):
    """A custom one with ``right_inverse``: registering replaces the parameter's memory (and
    values) with ``right_inverse(weight)``."""

    def forward(self, X):
        return 2.0 * X

    def right_inverse(self, W):
        return W / 2.0


def reparametrize(module, kind):
    """Register ``kind`` on ``module.weight``; return the Parameter the optimizer now trains
    through it, and whether its memory was replaced (as torch does it)."""
    from torch.nn.utils import parametrize, prune
    from torch.nn.utils.parametrizations import orthogonal

    if kind == "prune":  # the weight becomes weight_orig (the same Parameter) times a mask
        prune.l1_unstructured(module, "weight", amount=0.3)
        return module.weight_orig, False
    if kind == "orthogonal":
        orthogonal(module)
    elif kind == "orthogonal-swap":  # the parameter's contents swapped in, not set_()
        torch.__future__.set_swap_module_params_on_conversion(True)
        try:
            orthogonal(module)
        finally:
            torch.__future__.set_swap_module_params_on_conversion(False)
    else:
        parametrize.register_parametrization(module, "weight",
                                             Symmetric() if kind == "symmetric" else Scaled())
    return module.parametrizations.weight.original, kind != "symmetric"


@pytest.mark.parametrize("kind", ["orthogonal", "orthogonal-swap", "symmetric", "scaled",
                                  "prune"])
def test_parametrization_registered_after_the_optimizer(kind):
    """Registered after 3 steps: the optimizer's Parameter stays the one trained (torch keeps
    it as ``parametrizations.weight.original``, or ``weight_orig`` for pruning), its memory
    replaced or not; 5 more steps as with torch.optim."""
    dtype = torch.float64
    got = {}
    for impl in IMPLS:
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(6, 6), nn.Tanh(), nn.Linear(6, 3)).to(dtype)
        opt = make_opt(impl, "adam", model.parameters())
        train(model, opt, 0, 3, dtype)
        weight, where = model[0].weight, model[0].weight.data_ptr()
        trained, moves = reparametrize(model[0], kind)
        assert trained is weight  # the optimizer's parameter, kept by torch
        assert (trained.data_ptr() != where) == moves  # the premise
        train(model, opt, 3, 8, dtype)
        got[impl] = params_of(model), model[0].weight.detach().clone()
    assert_params_close(got["fastopt"][0], got["torch"][0], RTOL[dtype], kind)
    assert_close(got["fastopt"][1].numpy(), got["torch"][1].numpy(), RTOL[dtype], f"{kind} weight")


# ------------------------------------------------------------------------------- 7. others


def test_torch_compile_of_the_model():
    got = {}
    for impl in IMPLS:
        torch._dynamo.reset()
        model = mlp()
        compiled = torch.compile(model, backend="aot_eager")
        opt = make_opt(impl, "adam", compiled.parameters())
        train(compiled, opt, 0, 6)
        got[impl] = params_of(model)
        assert_params_differ(got[impl], params_of(mlp()), RTOL[torch.float32], "trained")
    assert_params_close(got["fastopt"], got["torch"], RTOL[torch.float32])


def test_grad_scaler_with_autocast_unscale_clip_and_a_skipped_step():
    got = {}
    for impl in IMPLS:
        model = mlp()
        opt = make_opt(impl, "adamw", model.parameters())
        scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 12, growth_interval=2)
        scales = []
        for k in range(8):
            x, y = batch(k)
            opt.zero_grad()
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss = F.mse_loss(model(x), y)
            scaler.scale(loss).backward()
            if k == 3:
                model[0].weight.grad[0, 0] = float("inf")
            scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(model.parameters(), 0.5)
            before = params_of(model)
            scaler.step(opt)
            scaler.update()
            scales.append(scaler.get_scale())
            if k == 3:
                assert_params_equal(params_of(model), before, f"{impl}: the skipped step")
        got[impl] = params_of(model), scales, snapshot(opt.state_dict())
        assert float(got[impl][2]["state"][0]["step"]) == 7
    assert_params_close(got["fastopt"][0], got["torch"][0], RTOL[torch.float32])
    assert got["fastopt"][1] == got["torch"][1]
    assert_state_dicts_match(got["fastopt"][2], got["torch"][2], RTOL[torch.float32])


def test_swa_utils_averaged_model_swalr_and_update_bn():
    from torch.optim import swa_utils

    got = {}
    for impl in IMPLS:
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(6, 16), nn.BatchNorm1d(16), nn.Tanh(), nn.Linear(16, 3))
        opt = make_opt(impl, "sgd", model.parameters())
        ema = swa_utils.AveragedModel(model, multi_avg_fn=swa_utils.get_ema_multi_avg_fn(0.8))
        swa = swa_utils.AveragedModel(model)
        schedule = swa_utils.SWALR(opt, swa_lr=0.01, anneal_epochs=3)
        lrs = []
        for k in range(8):
            train(model, opt, k, k + 1)
            ema.update_parameters(model)
            swa.update_parameters(model)
            schedule.step()
            lrs.append(opt.param_groups[0]["lr"])
        swa_utils.update_bn([batch(k) for k in range(3)], swa)
        got[impl] = (params_of(ema.module), params_of(swa.module), lrs,
                     swa.module[1].running_mean.clone())
    for k, what in enumerate(["ema", "swa"]):
        assert_params_close(got["fastopt"][k], got["torch"][k], RTOL[torch.float32], what)
    assert got["fastopt"][2] == got["torch"][2]
    assert_close(got["fastopt"][3].numpy(), got["torch"][3].numpy(), RTOL[torch.float32], "bn")


@pytest.mark.parametrize("config", ["adam", "sgd", "rmsprop"])
def test_optimizer_step_in_backward_from_post_accumulate_grad_hooks(config):
    """torch's 'fuse the optimizer step into backward' recipe: one optimizer per parameter,
    stepped (and its gradient freed) from the parameter's post-accumulate-grad hook."""
    dtype = torch.float64
    got = {}
    for impl in IMPLS:
        model = mlp(dtype)
        opts = {p: make_opt(impl, config, [p]) for p in model.parameters()}

        def hook(p, opts=opts):
            opts[p].step()
            opts[p].zero_grad()

        for p in model.parameters():
            p.register_post_accumulate_grad_hook(hook)
        for k in range(6):
            x, y = batch(k, dtype)
            F.mse_loss(model(x), y).backward()
            assert all(p.grad is None for p in model.parameters())
        got[impl] = params_of(model)
    assert_params_differ(got["torch"], params_of(mlp(dtype)), RTOL[dtype], "trained")
    assert_params_close(got["fastopt"], got["torch"], RTOL[dtype])


@pytest.mark.parametrize("set_to_none", [True, False], ids=["set_to_none", "zeros"])
def test_requires_grad_false_mid_training(set_to_none):
    """A layer frozen after 3 steps: with gradients set to None it is no longer stepped; with
    zeroed gradients it is stepped with zeros, and Adam's moments keep moving it (torch)."""
    dtype = torch.float64
    got = {}
    for impl in IMPLS:
        model = mlp(dtype)
        opt = make_opt(impl, "adam", model.parameters())
        for k in range(8):
            if k == 3:
                model[2].requires_grad_(False)
            x, y = batch(k, dtype)
            opt.zero_grad(set_to_none=set_to_none)
            F.mse_loss(model(x), y).backward()
            opt.step()
            if k == 2:
                frozen_at = params_of(model[2])
        moved = not all(torch.equal(a, b) for a, b in zip(params_of(model[2]), frozen_at))
        assert moved == (not set_to_none), impl  # the premise, torch's semantics
        got[impl] = params_of(model), snapshot(opt.state_dict())
    assert_params_close(got["fastopt"][0], got["torch"][0], RTOL[dtype])
    assert_state_dicts_match(got["fastopt"][1], got["torch"][1], RTOL[dtype])


class ConvNet(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 3)
        self.head = nn.Linear(4, 3)

    def forward(self, x):
        return self.head(torch.tanh(self.conv(x)).mean((2, 3)))


def share_memory(model):
    model.share_memory()


def vector_to_parameters(model):
    vec = torch.nn.utils.parameters_to_vector(model.parameters())
    torch.nn.utils.vector_to_parameters(vec, model.parameters())


def channels_last(model):
    model.to(memory_format=torch.channels_last)


@pytest.mark.parametrize("move", [share_memory, vector_to_parameters, channels_last],
                         ids=lambda f: f.__name__)
@pytest.mark.parametrize("config", ["adam", "sgd"])
def test_tools_that_replace_parameter_memory_mid_training(move, config):
    """After 3 steps (the optimizer has state) a tool gives the parameters new memory:
    ``share_memory()`` (Hogwild's set-up) moves storages into shared memory,
    ``vector_to_parameters`` makes them views of one vector, ``channels_last`` re-lays the
    convolution's weight out in memory. Training goes on as with torch.optim."""
    dtype = torch.float64
    got = {}
    for impl in IMPLS:
        model = ConvNet().to(dtype)
        opt = make_opt(impl, config, model.parameters())
        g = torch.Generator().manual_seed(3)
        xs = [torch.randn(4, 3, 6, 6, generator=g, dtype=dtype) for _ in range(8)]
        for k in range(8):
            if k == 3:
                where = [p.data_ptr() for p in model.parameters()]
                move(model)
                assert where != [p.data_ptr() for p in model.parameters()]  # the premise
                if move is channels_last:
                    xs = [x.contiguous(memory_format=torch.channels_last) for x in xs]
            opt.zero_grad()
            model(xs[k]).square().mean().backward()
            opt.step()
        got[impl] = params_of(model)
    assert_params_close(got["fastopt"], got["torch"], RTOL[dtype], move.__name__)
