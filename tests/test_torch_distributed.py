"""fastopt.torch.distributed: ZeRO-1 (``ZeroOptimizer``) and stepping in backward
(``step_in_backward``), on the CPU (gloo, ranks on 127.0.0.1 through ``distributed.run``).

ZeroOptimizer, each rank training the whole model on its part of every global batch (12 rows,
split over the ranks, so that runs at 2 and 3 ranks follow one trajectory up to rounding):

1. At 2 ranks, every configuration of ``test_torch_ecosystem`` in float32 and float64: the
   parameters and the consolidated state dict are bitwise those of one unsharded fastopt
   optimizer stepped with the same averaged gradients (all-reduced here, by the test), and
   close to DDP + torch.optim's; the ranks' parameters are bitwise equal.
   The same by reduce-scatter and all-gather (``reduce_scatter=True``; on gloo, the default
   is an all-reduce and a broadcast per rank, which gloo runs faster).
2. A parameter with a gradient on rank 0 only is averaged with zeros (as DDP does), one with no
   gradient anywhere is not stepped and has no state (as torch.optim): bitwise the unsharded
   optimizer given the same gradients and Nones.
3. State memory: the ranks' per-element state adds up to the unsharded optimizer's, and no
   rank holds more than its chunk of the layout (a third at 3 ranks).
4. Resharding: the consolidated state dict saved at 3 ranks, loaded at 2, consolidates again
   to itself bitwise, and the run resumed at 2 ranks follows the uninterrupted 3-rank run;
   torch.optim's state dict (DDP at 3 ranks) loads too and resumes torch's run.
5. Refused with a message, changing nothing: a class not of fastopt.torch, a state dict of the
   wrong shapes, a parameter whose memory was replaced; refused at construction, saying why:
   LAMB and LARS (per-tensor norms, which a slice does not have) and 8-bit state (blocks).
6. The other element-wise rules (RAdam, Rprop, ASGD, Lion, ADOPT, AdEMAMix; float64): bitwise
   the unsharded optimizer, parameters and consolidated state.
7. State kept in bfloat16 or float16 (rounded to nearest, element by element): bitwise the
   unsharded optimizer with the same state_dtype.

step_in_backward, against the same optimizer stepped after backward, bitwise: every
configuration in one process (its gradients freed as it goes, or kept); under DDP with and
without ``gradient_as_bucket_view`` (buckets small enough that there are several), the ranks
bitwise equal; ``find_unused_parameters=True`` refused. (FSDP2's case is in test_torch_fsdp.)
"""

from __future__ import annotations

import os

import pytest

torch = pytest.importorskip("torch")

import torch.distributed as dist  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import fastopt.torch as ft  # noqa: E402
import distributed  # noqa: E402
from test_torch_ecosystem import (  # noqa: E402
    CONFIGS,
    CONFIG_IDS,
    DTYPE_IDS,
    DTYPES,
    RTOL,
    Branchy,
    assert_params_close,
    assert_params_differ,
    assert_params_equal,
    assert_state_dicts_match,
    batch,
    make_opt,
    mlp,
    needs_distributed,
    one_torch_thread,
    params_of,
    snapshot,
)

ROWS = 12  # a global batch: split evenly over 2 or 3 ranks
K, M = 4, 3  # steps before a checkpoint, and after it
AT_3 = ["adam", "nadam", "sgd", "adagrad"]
LOW_STATE = ["bfloat16", "float16"]


def rows_of(k, dtype):
    """This rank's part of global batch ``k``."""
    rank, world_size = dist.get_rank(), dist.get_world_size()
    x, y = batch(k, dtype, n=ROWS)
    part = slice(rank * ROWS // world_size, (rank + 1) * ROWS // world_size)
    return x[part], y[part]


def backward(model, k, dtype):
    x, y = rows_of(k, dtype)
    F.mse_loss(model(x), y).backward()


# The element-wise rules torch.optim lacks or test_torch_ecosystem does not train, each with
# its own scalar state or warm-up where it has one (ASGD's eta and mu from step t0 = 2 on).
MERGED = {
    "radam": ("RAdam", dict(lr=0.01, weight_decay=0.01, decoupled_weight_decay=True)),
    "rprop": ("Rprop", dict(lr=0.01)),
    "asgd": ("ASGD", dict(lr=0.01, t0=2, weight_decay=0.01)),
    "lion": ("Lion", dict(lr=1e-3, weight_decay=0.1)),
    "adopt": ("ADOPT", dict(lr=0.01, weight_decay=0.01)),
    "ademamix": ("AdEMAMix", dict(lr=0.01, t_alpha_beta3=5)),
}
CASES = {**CONFIGS, **MERGED}


def zero(config, params, reduce_scatter=None, **overrides):
    from fastopt.torch.distributed import ZeroOptimizer

    name, kwargs = CASES[config]
    return ZeroOptimizer(params, getattr(ft, name), reduce_scatter=reduce_scatter,
                         **{**kwargs, **overrides})


def unsharded(config, params, **overrides):
    name, kwargs = CASES[config]
    return getattr(ft, name)(params, **{**kwargs, **overrides})


def averaged(model):
    """The gradients as the ranks average them: zeros where a rank has none; None where no
    rank has one."""
    grads = []
    for p in model.parameters():
        had = torch.tensor([float(p.grad is not None)])
        dist.all_reduce(had)
        g = torch.zeros_like(p) if p.grad is None else p.grad.clone()
        dist.all_reduce(g, op=dist.ReduceOp.AVG)
        grads.append(g if had.item() else None)
    return grads


def zero_and_unsharded(config, dtype, model_fn, forward, steps, reduce_scatter=None,
                       **overrides):
    """The same model trained by ZeroOptimizer and by one unsharded fastopt optimizer given the
    averaged gradients (both with hyper-parameters ``overrides``); returns both runs'
    parameters and state dicts."""
    runs = {}
    model, ref = model_fn(), model_fn()
    opt = zero(config, model.parameters(), reduce_scatter, **overrides)
    ref_opt = unsharded(config, ref.parameters(), **overrides)
    for k in range(steps):
        for m, o in ((model, opt), (ref, ref_opt)):
            o.zero_grad()
            forward(m, k)
        for p, g in zip(ref.parameters(), averaged(ref)):
            p.grad = g
        opt.step()
        ref_opt.step()
    runs["zero"] = params_of(model), snapshot(opt.state_dict())
    runs["unsharded"] = params_of(ref), snapshot(ref_opt.state_dict())
    return runs, opt


def save(path, model, opt):
    """The model's and the (consolidated) optimizer's state dicts, written by rank 0."""
    sd = opt.state_dict()  # every rank: ZeroOptimizer consolidates
    if dist.get_rank() == 0:
        torch.save({"model": model.state_dict(), "optim": sd}, path)
    return sd


def ddp_torch(config, dtype, steps, path=None):
    """DDP + torch.optim, ``steps`` steps, saved to ``path`` after K of them."""
    from torch.nn.parallel import DistributedDataParallel as DDP

    model = mlp(dtype)
    ddp = DDP(model)
    opt = make_opt("torch", config, ddp.parameters())
    for k in range(steps):
        if k == K and path is not None:
            save(path, model, opt)
        opt.zero_grad()
        backward(ddp, k, dtype)
        opt.step()
    return params_of(model), snapshot(opt.state_dict())


def branchy_forward(model, k, dtype=torch.float64):
    """Branchy's branches: ``rank0_only`` has a gradient on rank 0 only, ``never`` none."""
    x, y = rows_of(k, dtype)
    F.mse_loss(model(x, dist.get_rank(), 0, True), y).backward()


def branchy():
    torch.manual_seed(0)
    return Branchy().to(torch.float64)


# ------------------------------------------------------------------------------- the ranks


def three_ranks_rank(ckpt_dir):
    """ZeroOptimizer and DDP + torch.optim, AT_3 in both dtypes: K steps, the consolidated
    state dicts saved, M more. Returns per case the parameters at K and at the end, and each
    rank's state bytes with those of an unsharded optimizer of the same model."""
    out = {}
    for dtype in DTYPES:
        for config in AT_3:
            model = mlp(dtype)
            opt = zero(config, model.parameters())
            for k in range(K + M):
                if k == K:
                    sd = save(os.path.join(ckpt_dir, f"zero-{config}-{dtype}.pt"), model, opt)
                    out[dtype, config, "zero", "saved"] = snapshot(sd)
                opt.zero_grad()
                backward(model, k, dtype)
                opt.step()
            out[dtype, config, "zero", "end"] = params_of(model)
            full = make_opt("fastopt", config, mlp(dtype).parameters())
            full.load_state_dict(opt.state_dict())
            out[dtype, config, "bytes"] = opt.nbytes(), sum(
                v.numel() * v.element_size() for entry in full.state.values()
                for name, v in entry.items() if name not in ("step", "mu_product"))
            out[dtype, config, "torch", "end"] = ddp_torch(
                config, dtype, K + M, os.path.join(ckpt_dir, f"torch-{config}-{dtype}.pt"))[0]
    return out


def zero_resumed(config, dtype, path):
    """A fresh model (another seed) and ZeroOptimizer loaded from a file of ``save``, M more
    steps; returns the consolidated state dict right after loading and the parameters at the
    end."""
    ckpt = torch.load(path, weights_only=True)
    model = mlp(dtype, seed=1)
    model.load_state_dict(ckpt["model"])
    opt = zero(config, model.parameters())
    opt.load_state_dict(ckpt["optim"])
    loaded = snapshot(opt.state_dict())
    for k in range(K, K + M):
        opt.zero_grad()
        backward(model, k, dtype)
        opt.step()
    return loaded, params_of(model)


def overlap_ddp_rank(bucket_view):
    """step_in_backward under DDP against step() after backward, each config in float64."""
    from torch.nn.parallel import DistributedDataParallel as DDP

    out = {}
    for config in CONFIG_IDS:
        for mode in ("after", "in backward"):
            model = mlp(torch.float64)
            ddp = DDP(model, gradient_as_bucket_view=bucket_view, bucket_cap_mb=0.002)
            opt = make_opt("fastopt", config, ddp.parameters())
            calls = []
            if mode == "in backward":
                ft.step_in_backward(opt, ddp=ddp)
                step_parameters = opt.step_parameters
                opt.step_parameters = lambda ps, gs=None: (calls.append(len(ps)),
                                                           step_parameters(ps, gs))
            for k in range(5):
                opt.zero_grad()
                backward(ddp, k, torch.float64)
                if mode == "after":
                    opt.step()
            out[config, mode] = params_of(model), snapshot(opt.state_dict())
            out["steps per backward"] = len(calls) / 5
    return out


def refusals_rank():
    """What ZeroOptimizer and step_in_backward refuse, and the messages."""
    from torch.nn.parallel import DistributedDataParallel as DDP

    from fastopt.torch.distributed import ZeroOptimizer

    out = {}

    def refused(key, call):
        try:
            call()
        except (TypeError, ValueError, RuntimeError, NotImplementedError) as error:
            out[key] = f"{type(error).__name__}: {error}"
        else:
            out[key] = None

    model = mlp(torch.float64)
    refused("torch class", lambda: ZeroOptimizer(model.parameters(), torch.optim.Adam))
    opt = zero("adam", model.parameters())
    refused("add_param_group", lambda: opt.add_param_group({"params": [torch.zeros(2)]}))
    opt.zero_grad()
    backward(model, 0, torch.float64)
    opt.step()
    before = snapshot(opt.state_dict()), params_of(model)
    bad = snapshot(before[0])
    bad["state"][2]["exp_avg"] = torch.zeros(3, 3, dtype=torch.float64)
    refused("wrong shape", lambda: opt.load_state_dict(bad))
    model[0].weight.data = model[0].weight.data.clone()
    refused("memory replaced", opt.step)
    after = snapshot(opt.state_dict()), params_of(model)
    out["unchanged"] = (all(torch.equal(a, b) for a, b in zip(before[1], after[1])) and all(
        torch.equal(before[0]["state"][i][k], after[0]["state"][i][k])
        for i in before[0]["state"] for k in before[0]["state"][i]))
    # A slice of a tensor has neither its norms nor its 8-bit blocks (refused on every rank,
    # before any collective)
    refused("LAMB", lambda: ZeroOptimizer(model.parameters(), ft.LAMB))
    refused("LARS", lambda: ZeroOptimizer(model.parameters(), ft.LARS, lr=0.1))
    single = mlp(torch.float32)  # 8-bit state is for float32 parameters
    refused("8-bit state", lambda: zero("adam", single.parameters(), state_dtype="8bit"))
    refused("8-bit role", lambda: zero("adam", single.parameters(),
                                       state_dtype={"exp_avg_sq": "8bit"}))
    ddp = DDP(branchy(), find_unused_parameters=True)
    refused("find_unused_parameters", lambda: ft.step_in_backward(
        make_opt("fastopt", "adam", ddp.parameters()), ddp=ddp))
    return out


def two_ranks_rank(ckpt_dir):
    out = {}
    for dtype in DTYPES:
        for config in CONFIG_IDS:
            runs, _ = zero_and_unsharded(config, dtype, lambda dtype=dtype: mlp(dtype),
                                         lambda m, k, dtype=dtype: backward(m, k, dtype), K + M)
            out[dtype, config] = runs
            out[dtype, config, "torch"] = ddp_torch(config, dtype, K + M)
    for config in ("adam", "sgd"):
        out["branchy", config], _ = zero_and_unsharded(config, torch.float64, branchy,
                                                       branchy_forward, 4)
    for config in MERGED:
        out["merged", config], _ = zero_and_unsharded(
            config, torch.float64, lambda: mlp(torch.float64),
            lambda m, k: backward(m, k, torch.float64), K)
    for state_dtype in LOW_STATE:  # state rounded to nearest, element by element
        out["state_dtype", state_dtype], _ = zero_and_unsharded(
            "adam", torch.float32, mlp, lambda m, k: backward(m, k, torch.float32), K,
            state_dtype=state_dtype)
    for dtype in DTYPES:  # gloo's own reduce-scatter and all-gather (slower, the same result)
        out["reduce_scatter", dtype], _ = zero_and_unsharded(
            "adam", dtype, lambda dtype=dtype: mlp(dtype),
            lambda m, k, dtype=dtype: backward(m, k, dtype), K, reduce_scatter=True)
    for dtype in DTYPES:
        for config in AT_3:
            for src in ("zero", "torch"):
                out[dtype, config, "from " + src] = zero_resumed(
                    config, dtype, os.path.join(ckpt_dir, f"{src}-{config}-{dtype}.pt"))
    for bucket_view in (False, True):
        out["overlap", bucket_view] = overlap_ddp_rank(bucket_view)
    out["refusals"] = refusals_rank()
    return out


# ------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def at_3(checkpoints):
    return distributed.run(3, three_ranks_rank, str(checkpoints), timeout=150)


@pytest.fixture(scope="module")
def at_2_ranks(at_3, checkpoints):
    return distributed.run(2, two_ranks_rank, str(checkpoints), timeout=170)


# ------------------------------------------------------------------------------- ZeRO-1


@needs_distributed
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("config", CONFIG_IDS)
def test_zero_is_bitwise_the_unsharded_step_and_close_to_ddp_torch_optim(config, dtype,
                                                                        at_2_ranks):
    what = f"{config} {dtype}"
    runs = at_2_ranks[0][dtype, config]
    params, state = runs["zero"]
    assert_params_equal(at_2_ranks[1][dtype, config]["zero"][0], params, f"{what}: rank 1 vs 0")
    assert_params_equal(params, runs["unsharded"][0], f"{what}: vs unsharded")
    assert_state_dicts_match(state, runs["unsharded"][1], None, f"{what}: vs unsharded")
    ref_params, ref_state = at_2_ranks[0][dtype, config, "torch"]
    assert_params_close(params, ref_params, RTOL[dtype], f"{what}: vs DDP + torch.optim")
    assert_state_dicts_match(state, ref_state, RTOL[dtype], f"{what}: vs DDP + torch.optim")
    torch.manual_seed(0)
    assert_params_differ(params, params_of(mlp(dtype)), RTOL[dtype], f"{what}: trained")


@needs_distributed
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_zero_by_reduce_scatter_and_all_gather(dtype, at_2):
    runs = at_2["reduce_scatter", dtype]
    assert_params_equal(runs["zero"][0], runs["unsharded"][0], f"{dtype}")
    assert_state_dicts_match(runs["zero"][1], runs["unsharded"][1], None, f"{dtype}")


@needs_distributed
@pytest.mark.parametrize("config", ["adam", "sgd"])
def test_zero_parameters_without_gradients(config, at_2):
    runs = at_2["branchy", config]
    params, state = runs["zero"]
    assert_params_equal(params, runs["unsharded"][0], config)
    assert_state_dicts_match(state, runs["unsharded"][1], None, config)
    names = [name for name, _ in Branchy().named_parameters()]
    never = {i for i, name in enumerate(names) if name.startswith("never")}
    assert never and set(state["state"]).isdisjoint(never)
    initial = params_of(branchy())
    for i in never:  # the premise: no gradient anywhere, never stepped
        assert torch.equal(params[i], initial[i])
    rank0 = [i for i, name in enumerate(names) if name.startswith("rank0_only")]
    assert all(not torch.equal(params[i], initial[i]) for i in rank0)


@needs_distributed
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("config", AT_3)
def test_zero_state_per_rank_is_its_chunk(config, dtype, at_3):
    from fastopt.torch.distributed import Layout

    per_rank = [r[dtype, config, "bytes"][0] for r in at_3]
    whole = at_3[0][dtype, config, "bytes"][1]
    assert sum(per_rank) == whole > 0
    itemsize = torch.finfo(dtype).bits // 8
    roles = {"adam": 3, "nadam": 2, "sgd": 1, "adagrad": 1}[config]  # Adam's amsgrad: three
    shard = Layout([p.numel() for p in mlp().parameters()], itemsize, 3).shard
    assert max(per_rank) <= shard * itemsize * roles < 0.4 * whole


@needs_distributed
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("config", AT_3)
def test_zero_saved_at_3_ranks_resumes_at_2(config, dtype, at_3, at_2):
    what = f"{config} {dtype} (3 -> 2 ranks)"
    loaded, params = at_2[dtype, config, "from zero"]
    assert_state_dicts_match(loaded, at_3[0][dtype, config, "zero", "saved"], None,
                             f"{what}: consolidated after loading")
    assert_params_close(params, at_3[0][dtype, config, "zero", "end"], RTOL[dtype], what)
    _, params = at_2[dtype, config, "from torch"]
    assert_params_close(params, at_3[0][dtype, config, "torch", "end"], RTOL[dtype],
                        f"{what}: from DDP + torch.optim's state dict")


@needs_distributed
def test_zero_refusals_say_why_and_change_nothing(at_2):
    refused = at_2["refusals"]
    expected = {
        "torch class": "TypeError: optimizer_class: expected a fastopt.torch optimizer class",
        "add_param_group": "NotImplementedError: ZeroOptimizer lays its parameters out once",
        "wrong shape": "ValueError: state[params[2]]['exp_avg']: expected shape (32, 32)",
        "memory replaced": "RuntimeError: params[0]: its memory was replaced",
        "find_unused_parameters": "ValueError: ddp: expected find_unused_parameters=False",
        "LAMB": "ValueError: param_groups[0]: LAMB scales each tensor's step by a ratio of "
                "whole-tensor norms, and each rank's slice of the flat parameters holds part",
        "LARS": "ValueError: param_groups[0]: LARS scales each tensor's step",
        "8-bit state": "ValueError: param_groups[0]: state_dtype '8bit' quantises blocks of "
                       "256 elements",
        "8-bit role": "ValueError: param_groups[0]: state_dtype '8bit'",
    }
    for key, start in expected.items():
        assert refused[key] is not None and refused[key].startswith(start), (key, refused[key])
    assert refused["unchanged"]


@needs_distributed
@pytest.mark.parametrize("config", list(MERGED))
def test_zero_with_the_other_element_wise_rules_is_bitwise_the_unsharded_step(config, at_2):
    runs = at_2["merged", config]
    params, state = runs["zero"]
    assert_params_equal(params, runs["unsharded"][0], config)
    assert_state_dicts_match(state, runs["unsharded"][1], None, config)
    assert_params_differ(params, params_of(mlp(torch.float64)), 1e-6, config)  # it trained


@needs_distributed
@pytest.mark.parametrize("state_dtype", LOW_STATE)
def test_zero_with_low_precision_state_is_bitwise_the_unsharded_step(state_dtype, at_2):
    runs = at_2["state_dtype", state_dtype]
    params, state = runs["zero"]
    assert_params_equal(params, runs["unsharded"][0], state_dtype)
    assert_state_dicts_match(state, runs["unsharded"][1], None, state_dtype)
    for entry in state["state"].values():  # the premise: the state is stored so
        assert entry["exp_avg"].dtype == getattr(torch, state_dtype)


# ------------------------------------------------------------------------------- overlap


@pytest.mark.parametrize("free_gradients", [True, False], ids=["freed", "kept"])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("config", CONFIG_IDS)
def test_step_in_backward_is_bitwise_step_after_backward(config, dtype, free_gradients):
    runs = {}
    for mode in ("after", "in backward"):
        model = mlp(dtype)
        opt = make_opt("fastopt", config, model.parameters())
        handle = None if mode == "after" else ft.step_in_backward(opt, free_gradients=free_gradients)
        for k in range(6):
            if mode == "after" or not free_gradients:
                opt.zero_grad()
            x, y = batch(k, dtype)
            F.mse_loss(model(x), y).backward()
            if mode == "after":
                opt.step()
            else:
                assert all((p.grad is None) == free_gradients for p in model.parameters())
        runs[mode] = params_of(model), snapshot(opt.state_dict())
        if handle is not None:  # removed: backward no longer steps
            handle.remove()
            before = params_of(model)
            F.mse_loss(model(batch(9, dtype)[0]), batch(9, dtype)[1]).backward()
            assert_params_equal(params_of(model), before, "after remove()")
    assert_params_equal(runs["in backward"][0], runs["after"][0], config)
    assert_state_dicts_match(runs["in backward"][1], runs["after"][1], None, config)
    assert_params_differ(runs["after"][0], params_of(mlp(dtype)), RTOL[dtype], "trained")


def test_step_parameters_refuses_what_is_no_parameter_of_it():
    model = mlp()
    opt = make_opt("fastopt", "adam", model.parameters())
    with pytest.raises(ValueError, match=r"params\[0\]: expected a parameter of this optimizer"):
        opt.step_parameters([torch.zeros(3)])
    p = model[0].weight
    p.grad = torch.ones_like(p)
    with pytest.raises(ValueError, match=r"params\[1\]: expected each parameter once"):
        opt.step_parameters([p, p])
    assert not opt.state  # nothing stepped
    with pytest.raises(TypeError, match="optimizer: expected a fastopt.torch optimizer"):
        ft.step_in_backward(torch.optim.Adam(model.parameters()))


@needs_distributed
@pytest.mark.parametrize("bucket_view", [False, True], ids=["copied", "bucket_view"])
def test_step_in_backward_under_ddp(bucket_view, at_2_ranks):
    results = [r["overlap", bucket_view] for r in at_2_ranks]
    # the premise: several buckets, each stepped as its all-reduce completes
    assert results[0]["steps per backward"] > 1
    for config in CONFIG_IDS:
        params, state = results[0][config, "in backward"]
        assert_params_equal(results[1][config, "in backward"][0], params, f"{config}: rank 1")
        assert_params_equal(params, results[0][config, "after"][0], config)
        assert_state_dicts_match(state, results[0][config, "after"][1], None, config)
