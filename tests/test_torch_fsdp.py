"""fastopt.torch under FSDP2 (``torch.distributed.fsdp.fully_shard``), against torch.optim.

Each Linear layer of a small MLP and the root are ``fully_shard``-ed on the CPU (gloo, ranks on
127.0.0.1 through ``distributed.run``), so that every parameter is a DTensor sharded on dim 0,
whose local shard is a view into the parameter's own padded storage; the last layer has 3 rows,
so at 4 ranks one rank's shards are empty. Proven here, each run once with ``torch.optim.X`` and
once with ``fastopt.torch.X`` over the same model, data and steps:

1. Training at 2 ranks (all eight classes) and at 4 ranks (four), float32 and float64: the full
   parameters (``full_tensor()``) and the full optimizer state (``get_optimizer_state_dict``
   with ``full_state_dict=True``) equal torch.optim's within the tolerances of
   ``test_torch_ecosystem``; fastopt's state entries are DTensors of their parameter's mesh,
   placements and global shape, and a rank holds state for its shards only.
2. ``torch.distributed.checkpoint`` at 2 ranks: ``dcp.save`` after some steps, ``dcp.load`` and
   ``set_optimizer_state_dict`` into a fresh model and optimizer (whose state DCP initialises
   by a step with zero gradients), more steps: bitwise the uninterrupted run; a run that loads
   the model only differs.
3. Resharding: saved at 4 ranks (by fastopt and by torch.optim), loaded at 2: fastopt's full
   state after loading is bitwise the state saved, and fastopt resumed at 2 ranks from each
   checkpoint follows that implementation's uninterrupted 4-rank run (every step's global
   batch is the same at any world size, split over the ranks), within the tolerances.
4. ``step_in_backward``: each sharded parameter stepped from the post-accumulate-grad hook
   FSDP2 runs after its reduce-scatter, bitwise as ``step()`` after backward.
5. Refused at construction, saying why: LAMB and LARS over a sharded DTensor (a shard has
   not its tensor's norms), Muon (a shard is not its matrix) and 8-bit state (blocks). Over a sharded DTensor, state in
   bfloat16 or float16, and the element-wise rules not trained above (RAdam, Rprop, ASGD, Lion,
   ADOPT, AdEMAMix), are bitwise the same optimizer over the same values unsharded.
6. With CUDA only (skipped otherwise): FSDP2 with ``CPUOffloadPolicy``, whose sharded
   parameters, gradients and so optimizer state live on the CPU under a CUDA mesh.

The multi-process runs are module fixtures (each rank trains every case once; the tests check
what they returned), so the processes start three times in all.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

import torch.distributed as dist  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

import distributed  # noqa: E402
from test_torch_ecosystem import (  # noqa: E402
    CONFIGS,
    DTYPE_IDS,
    DTYPES,
    IMPLS,
    RTOL,
    assert_params_close,
    assert_params_differ,
    assert_params_equal,
    assert_state_dicts_match,
    batch,
    dcp_restore,
    dcp_save,
    make_opt,
    mlp,
    needs_distributed,
    one_torch_thread,
)

pytestmark = needs_distributed

STEPS_K, STEPS_M = 4, 3  # steps before a checkpoint, and after it
AT_4 = ["adam", "nadam", "sgd"]  # at 4 ranks (all eight at 2)
DCP_CONFIGS = ["adam", "nadam", "adagrad", "sgd"]
RESHARD_CONFIGS = ["adam", "nadam"]


def sharded(dtype, seed=0, **fsdp):
    """``mlp`` with every Linear layer and the root under ``fully_shard``."""
    from torch.distributed.fsdp import fully_shard

    model = mlp(dtype, seed)
    for layer in model:
        if isinstance(layer, nn.Linear):
            fully_shard(layer, **fsdp)
    fully_shard(model, **fsdp)
    return model


def train(model, opt, start, stop, dtype, device="cpu"):
    """Steps ``start`` to ``stop``, each over one global batch (``batch(k)``, 16 rows) that the
    ranks split: the gradient FSDP2 averages is the global batch's at any world size (up to
    rounding), so that runs at 2 and 4 ranks follow one trajectory."""
    rank, world_size = dist.get_rank(), dist.get_world_size()
    for k in range(start, stop):
        x, y = batch(k, dtype)
        rows = slice(rank * len(x) // world_size, (rank + 1) * len(x) // world_size)
        x, y = x[rows], y[rows]
        opt.zero_grad()
        F.mse_loss(model(x.to(device)), y.to(device)).backward()
        opt.step()


def full_params(model):
    return [p.full_tensor().detach().cpu().clone() for p in model.parameters()]


def full_state(model, opt):
    """The optimizer's state dict with every DTensor gathered (a collective), as plain
    tensors: comparable across implementations and world sizes."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

    sd = get_optimizer_state_dict(model, opt, options=StateDictOptions(full_state_dict=True))
    return {"state": {k: {n: v.detach().cpu().clone() if torch.is_tensor(v) else v
                          for n, v in entry.items()} for k, entry in sd["state"].items()},
            "param_groups": sd["param_groups"]}


def check_state_layout(model, opt):
    """fastopt's state as torch.optim's under FSDP2: each tensor but ``step`` a DTensor of its
    parameter's mesh, placements and shape, whose local shard is the parameter's shard's
    size (a rank holds state for its shards only)."""
    from torch.distributed.tensor import DTensor

    for p in model.parameters():
        assert isinstance(p, DTensor)
        for name, value in opt.state[p].items():
            if name in ("step", "mu_product"):
                assert not isinstance(value, DTensor), name
                continue
            assert isinstance(value, DTensor), name
            assert (value.device_mesh, value.placements, value.shape) == (
                p.device_mesh, p.placements, p.shape), name
            assert value.to_local().shape == p.to_local().shape, name


def training_rank(configs, ckpt_dir=None):
    """Every case of ``configs`` in both dtypes, torch.optim then fastopt.torch: STEPS_K
    steps, a DCP checkpoint (where ``ckpt_dir`` is given), STEPS_M more. Returns the full
    parameters and state at the checkpoint and at the end, per case."""
    out = {}
    for dtype in DTYPES:
        for config in configs:
            for impl in IMPLS:
                model = sharded(dtype)
                opt = make_opt(impl, config, model.parameters())
                train(model, opt, 0, STEPS_K, dtype)
                if impl == "fastopt":
                    check_state_layout(model, opt)
                case = dtype, config, impl
                out[case, "saved"] = full_params(model), full_state(model, opt)
                if ckpt_dir is not None:
                    dcp_save(model, opt, f"{ckpt_dir}/{impl}-{config}-{str(dtype)[6:]}")
                train(model, opt, STEPS_K, STEPS_K + STEPS_M, dtype)
                out[case, "end"] = full_params(model), full_state(model, opt)
    return out


def resume_rank(configs, ckpt_dir, sources, optimizer=True, tag="resumed"):
    """A fresh model (another seed) and optimizer for each case, restored from each source's
    checkpoint in ``ckpt_dir`` (DCP initialises the fresh optimizer's state, then loads into
    it), then STEPS_M steps. Returns the full parameters and state after loading
    (``"<tag>, loaded"``) and at the end (``tag``)."""
    out = {}
    for dtype in DTYPES:
        for config in configs:
            for impl, src in sources:
                model = sharded(dtype, seed=1)
                opt = make_opt(impl, config, model.parameters())
                dcp_restore(model, opt, f"{ckpt_dir}/{src}-{config}-{str(dtype)[6:]}", optimizer)
                case = dtype, config, impl, src
                out[case, f"{tag}, loaded"] = full_params(model), full_state(model, opt)
                train(model, opt, STEPS_K, STEPS_K + STEPS_M, dtype)
                out[case, tag] = full_params(model), full_state(model, opt)
    return out


TP_STEPS = 5


def tensor_parallel_rank():
    """Parameters made by ``distribute_tensor`` as tensor parallelism lays them out: sharded on
    dim 1, sharded unevenly on dim 0, replicated; the replicated one's gradients Partial
    (each rank's part of a sum, as a row-parallel layer leaves them), the others' sharded
    like their parameters. Returns the full parameters after TP_STEPS steps, per case."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import DTensor, Partial, Replicate, Shard, distribute_tensor

    rank = dist.get_rank()
    mesh = init_device_mesh("cpu", (dist.get_world_size(),))
    layouts = [((8, 6), [Shard(1)]), ((3, 4), [Shard(0)]), ((5,), [Replicate()])]
    out = {}
    for dtype in DTYPES:
        for config in ("adam", "sgd", "rmsprop"):
            for impl in IMPLS:
                g = torch.Generator().manual_seed(5)
                params = [distribute_tensor(torch.randn(shape, generator=g, dtype=dtype), mesh,
                                            placements).requires_grad_()
                          for shape, placements in layouts]
                opt = make_opt(impl, config, params)
                for k in range(TP_STEPS):
                    g = torch.Generator().manual_seed(100 + k)
                    for p, (shape, placements) in zip(params, layouts):
                        grad = torch.randn(shape, generator=g, dtype=dtype)
                        if placements == [Replicate()]:  # this rank's part of the sum
                            part = grad * (rank + 1) / sum(range(1, dist.get_world_size() + 1))
                            p.grad = DTensor.from_local(part, mesh, [Partial()], run_check=False)
                        else:
                            p.grad = distribute_tensor(grad, mesh, placements)
                    opt.step()
                out[dtype, config, impl] = [p.full_tensor().detach().clone() for p in params]
    return out


def refusals_rank():
    """What fastopt.torch refuses of DTensors, with its message, and that nothing changed:
    a Partial parameter; a plain gradient of a DTensor parameter; a plain tensor, or a DTensor
    of other placements, loaded as a DTensor parameter's state."""
    import fastopt.torch as ft
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import DTensor, Partial, Replicate, Shard, distribute_tensor

    mesh = init_device_mesh("cpu", (dist.get_world_size(),))
    out = {}

    def refused(key, call):
        try:
            call()
        except (TypeError, ValueError, RuntimeError) as error:
            out[key] = f"{type(error).__name__}: {error}"
        else:
            out[key] = None

    partial = DTensor.from_local(torch.ones(4, 2), mesh, [Partial()]).requires_grad_()
    refused("partial parameter", lambda: ft.Adam([partial]))
    p = distribute_tensor(torch.ones(4, 2), mesh, [Shard(0)]).requires_grad_()
    opt = ft.Adam([p], lr=0.1)
    p.grad = torch.ones_like(p)
    opt.step()
    before = p.to_local().clone(), {k: v.to_local().clone() if hasattr(v, "to_local") else
                                    v.clone() for k, v in opt.state[p].items()}
    p.grad = torch.ones(4, 2)  # torch lets a plain tensor of the global shape be assigned
    refused("plain gradient", opt.step)
    sd = opt.state_dict()
    plain = {**sd, "state": {0: {**sd["state"][0], "exp_avg": torch.zeros(4, 2)}}}
    refused("plain state", lambda: opt.load_state_dict(plain))
    replicated = sd["state"][0]["exp_avg"].redistribute(mesh, [Replicate()])
    other = {**sd, "state": {0: {**sd["state"][0], "exp_avg": replicated}}}
    refused("other placements", lambda: opt.load_state_dict(other))
    # A shard has neither its tensor's norms nor its 8-bit blocks: refused at construction
    # (a replicated DTensor is whole on every rank, and taken).
    refused("LAMB", lambda: ft.LAMB([p]))
    refused("LARS", lambda: ft.LARS([p], lr=0.1))
    refused("Muon", lambda: ft.Muon([p]))
    refused("8-bit state", lambda: ft.Adam([p], state_dtype="8bit"))
    whole = distribute_tensor(torch.ones(4, 2), mesh, [Replicate()]).requires_grad_()
    refused("LAMB replicated", lambda: ft.LAMB([whole]))
    refused("Muon replicated", lambda: ft.Muon([whole]))
    after = p.to_local(), {k: v.to_local() if hasattr(v, "to_local") else v
                           for k, v in opt.state[p].items()}
    out["unchanged"] = torch.equal(before[0], after[0]) and before[1].keys() == after[1].keys() \
        and all(torch.equal(before[1][k], after[1][k]) for k in before[1])
    return out


def unsharded_rank():
    """A DTensor sharded unevenly on dim 0 and a plain tensor of the same values, stepped with
    the same gradients by the same optimizer: Adam with its state in bfloat16 and in float16,
    and the element-wise rules test_torch_ecosystem does not train (float64). Per case: (full
    parameter and state of the DTensor, the plain tensor's); state arrays only."""
    import fastopt.torch as ft
    from test_torch_distributed import MERGED
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import Shard, distribute_tensor

    mesh = init_device_mesh("cpu", (dist.get_world_size(),))
    cases = {state_dtype: ("Adam", dict(lr=0.01, weight_decay=0.01, state_dtype=state_dtype),
                           torch.float32) for state_dtype in ("bfloat16", "float16")}
    cases.update((config, (name, kwargs, torch.float64)) for config, (name, kwargs)
                 in MERGED.items())
    out = {}
    for case, (name, kwargs, dtype) in cases.items():
        start = torch.randn(5, 3, generator=torch.Generator().manual_seed(7), dtype=dtype)
        p = distribute_tensor(start.clone(), mesh, [Shard(0)]).requires_grad_()
        q = start.clone().requires_grad_()
        opts = [getattr(ft, name)([t], **kwargs) for t in (p, q)]
        for k in range(4):
            grad = torch.randn(5, 3, generator=torch.Generator().manual_seed(k), dtype=dtype)
            p.grad, q.grad = distribute_tensor(grad, mesh, [Shard(0)]), grad
            for opt in opts:
                opt.step()
        # in the state's order, the same on every rank (full_tensor is a collective)
        shapes = [k for k, v in opts[1].state[q].items() if v.shape == q.shape]
        sharded_state = {k: opts[0].state[p][k].full_tensor() for k in shapes}
        out[case] = ((p.full_tensor().detach(), sharded_state),
                     (q.detach(), {k: opts[1].state[q][k] for k in shapes}))
    return out


def in_backward_rank():
    """step_in_backward under FSDP2 (each sharded parameter stepped from the hook FSDP2 runs
    after its reduce-scatter) against step() after backward, in float64."""
    import fastopt.torch as ft

    out = {}
    for config in ("adam", "nadam", "sgd", "adagrad"):
        for mode in ("after", "in backward"):
            model = sharded(torch.float64)
            opt = make_opt("fastopt", config, model.parameters())
            if mode == "in backward":
                ft.step_in_backward(opt)
            for k in range(STEPS_K):
                opt.zero_grad()
                x, y = batch(k, torch.float64, dist.get_rank())
                F.mse_loss(model(x), y).backward()
                if mode == "after":
                    opt.step()
                else:
                    assert all(p.grad is None for p in model.parameters())  # freed as stepped
            out[config, mode] = full_params(model), full_state(model, opt)
    return out


def two_ranks_rank(ckpt_dir):
    out = {"tensor parallel": tensor_parallel_rank(), "refusals": refusals_rank(),
           "unsharded": unsharded_rank(),
           "in backward": in_backward_rank()}
    out.update(training_rank(list(CONFIGS), ckpt_dir))
    mine = [("fastopt", "fastopt")]
    out.update(resume_rank(DCP_CONFIGS, ckpt_dir, mine))
    out.update(resume_rank(DCP_CONFIGS, ckpt_dir, mine, optimizer=False, tag="model only"))
    return out


@pytest.fixture(scope="module")
def at_2_ranks(checkpoints):
    (checkpoints / "2").mkdir()
    return distributed.run(2, two_ranks_rank, str(checkpoints / "2"), timeout=170)


@pytest.fixture(scope="module")
def at_4(checkpoints):
    (checkpoints / "4").mkdir()
    return distributed.run(4, training_rank, AT_4, str(checkpoints / "4"), timeout=170)[0]


@pytest.fixture(scope="module")
def resharded(at_4, checkpoints):
    sources = [("fastopt", "fastopt"), ("fastopt", "torch")]
    return distributed.run(2, resume_rank, RESHARD_CONFIGS, str(checkpoints / "4"), sources,
                           timeout=120)[0]


def check_training(results, configs):
    for dtype in DTYPES:
        for config in configs:
            for when, steps in (("saved", STEPS_K), ("end", STEPS_K + STEPS_M)):
                what = f"{config} {dtype} after {steps} steps"
                (ours, our_state) = results[(dtype, config, "fastopt"), when]
                (ref, ref_state) = results[(dtype, config, "torch"), when]
                assert_params_close(ours, ref, RTOL[dtype], what)
                assert_state_dicts_match(our_state, ref_state, RTOL[dtype], what)
            torch.manual_seed(0)
            assert_params_differ(ref, [p.detach() for p in mlp(dtype).parameters()],
                                 RTOL[dtype], f"{config} {dtype}: trained")  # the premise


@pytest.mark.parametrize("world_size", [2, 4])
def test_fsdp2_trains_as_torch_optim(world_size, request):
    results = request.getfixturevalue(f"at_{world_size}")
    check_training(results, list(CONFIGS) if world_size == 2 else AT_4)


def test_distribute_tensor_parameters_train_as_torch_optim(at_2_ranks):
    results, other = (r["tensor parallel"] for r in at_2_ranks)
    for (dtype, config, impl), params in results.items():
        # The full tensors on either rank (the replicated one each rank's own): the same.
        assert_params_equal(other[dtype, config, impl], params, f"{config} {dtype} {impl}: rank 1")
        if impl == "fastopt":
            ref = results[dtype, config, "torch"]
            assert_params_close(params, ref, RTOL[dtype], f"{config} {dtype}")


def test_dtensor_refusals_say_why_and_change_nothing(at_2):
    refused = at_2["refusals"]
    expected = {
        "partial parameter": "ValueError: params[0]: expected a DTensor parameter sharded or "
                             "replicated, got placements (Partial(sum),)",
        "plain gradient": "RuntimeError: params[0]: expected the gradient of a DTensor "
                          "parameter to be a DTensor",
        "plain state": "TypeError: state[params[0]]['exp_avg']: expected a DTensor as its "
                       "parameter (placements (Shard(dim=0),)",
        "other placements": "ValueError: state[params[0]]['exp_avg']: expected a DTensor of "
                            "its parameter's placements (Shard(dim=0),)",
        "LAMB": "ValueError: params[0]: LAMB scales each tensor's step by a ratio of whole-"
                "tensor norms, and its local shard (placements (Shard(dim=0),)",
        "LARS": "ValueError: params[0]: LARS scales each tensor's step",
        "Muon": "ValueError: params[0]: Muon orthogonalises each parameter's whole matrix, and "
                "its local shard (placements (Shard(dim=0),)",
        "8-bit state": "ValueError: params[0]: state_dtype '8bit' quantises blocks of 256 "
                       "elements of each tensor",
    }
    for key, start in expected.items():
        assert refused[key] is not None and refused[key].startswith(start), (key, refused[key])
    assert refused["unchanged"]
    assert refused["LAMB replicated"] is None and refused["Muon replicated"] is None


@pytest.mark.parametrize("state_dtype", ["bfloat16", "float16"])
def test_dtensor_with_low_precision_state_is_bitwise_the_unsharded_step(state_dtype, at_2):
    (p, state), (q, plain_state) = at_2["unsharded"][state_dtype]
    assert torch.equal(p, q), state_dtype
    assert state.keys() == plain_state.keys() == {"exp_avg", "exp_avg_sq"}
    for key, value in state.items():
        assert value.dtype == getattr(torch, state_dtype)  # the premise: stored so
        assert torch.equal(value, plain_state[key]), (state_dtype, key)


@pytest.mark.parametrize("config", ["radam", "rprop", "asgd", "lion", "adopt", "ademamix"])
def test_dtensor_with_the_other_element_wise_rules_is_bitwise_the_unsharded_step(config, at_2):
    (p, state), (q, plain_state) = at_2["unsharded"][config]
    assert torch.equal(p, q), config
    assert state and state.keys() == plain_state.keys(), config
    for key, value in state.items():
        assert torch.equal(value, plain_state[key]), (config, key)


def test_fsdp2_step_in_backward_is_bitwise_step_after_backward(at_2):
    results = at_2["in backward"]
    for config in ("adam", "nadam", "sgd", "adagrad"):
        params, state = results[config, "in backward"]
        assert_params_equal(params, results[config, "after"][0], config)
        assert_state_dicts_match(state, results[config, "after"][1], None, config)
        torch.manual_seed(0)
        assert_params_differ(params, [p.detach() for p in mlp(torch.float64).parameters()],
                             RTOL[torch.float64], f"{config}: trained")


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("config", DCP_CONFIGS)
def test_fsdp2_dcp_resumes_bit_for_bit(config, dtype, at_2):
    what = f"{config} {dtype}"
    case = dtype, config, "fastopt", "fastopt"
    params, state = at_2[case, "resumed"]
    ref_params, ref_state = at_2[(dtype, config, "fastopt"), "end"]
    assert_params_equal(params, ref_params, f"{what}: resumed vs uninterrupted")
    assert_state_dicts_match(state, ref_state, None, f"{what}: resumed vs uninterrupted")
    assert_state_dicts_match(at_2[case, "resumed, loaded"][1],
                             at_2[(dtype, config, "fastopt"), "saved"][1], None,
                             f"{what}: loaded vs saved")
    other, _ = at_2[case, "model only"]
    assert_params_differ(other, params, RTOL[dtype], f"{what}: the model only loaded")


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("config", RESHARD_CONFIGS)
def test_fsdp2_dcp_saved_at_4_ranks_resumes_at_2(config, dtype, at_4, resharded):
    what = f"{config} {dtype} (4 -> 2 ranks)"
    saved_params, saved_state = at_4[(dtype, config, "fastopt"), "saved"]
    case = dtype, config, "fastopt", "fastopt"
    loaded_params, loaded_state = resharded[case, "resumed, loaded"]
    assert_params_equal(loaded_params, saved_params, f"{what}: parameters loaded")
    assert_state_dicts_match(loaded_state, saved_state, None, f"{what}: state loaded")
    # Resumed at 2 ranks, each from its checkpoint, as the 4-rank runs went on uninterrupted
    # (the same global batches: equal up to the rounding of their split over the ranks).
    for src in IMPLS:
        params, state = resharded[(dtype, config, "fastopt", src), "resumed"]
        ref_params, ref_state = at_4[(dtype, config, src), "end"]
        assert_params_close(params, ref_params, RTOL[dtype], f"{what}: from {src}'s checkpoint")
        assert_state_dicts_match(state, ref_state, RTOL[dtype], f"{what}: from {src}'s checkpoint")


# ------------------------------------------------------------------------------- CPU offload


def offload_rank():
    """FSDP2 with CPUOffloadPolicy on a CUDA mesh (one GPU per rank): the optimizer steps the
    CPU shards."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import CPUOffloadPolicy

    torch.cuda.set_device(dist.get_rank())
    mesh = init_device_mesh("cuda", (dist.get_world_size(),))
    out = {}
    for dtype in DTYPES:
        for config in AT_4:
            for impl in IMPLS:
                model = sharded(dtype, mesh=mesh, offload_policy=CPUOffloadPolicy())
                assert all(p.to_local().device.type == "cpu" for p in model.parameters())
                opt = make_opt(impl, config, model.parameters())
                train(model, opt, 0, STEPS_K + STEPS_M, dtype, device="cuda")
                out[dtype, config, impl] = full_params(model)
    return out


@pytest.mark.skipif(not torch.cuda.is_available(),
                    reason="CPUOffloadPolicy needs CUDA (a CUDA mesh whose shards live on the CPU)")
def test_fsdp2_cpu_offload_policy_trains_as_torch_optim():
    world_size = min(2, torch.cuda.device_count())
    results = distributed.run(world_size, offload_rank, backend="cpu:gloo,cuda:nccl",
                              timeout=170)[0]
    for dtype in DTYPES:
        for config in AT_4:
            assert_params_close(results[dtype, config, "fastopt"], results[dtype, config, "torch"],
                                RTOL[dtype], f"{config} {dtype} with CPUOffloadPolicy")
