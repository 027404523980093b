"""fastopt.torch held to torch's own optimizer test database and to test_optim.py's generic tests.

Every ``OptimizerInfo`` in ``torch.testing._internal.common_optimizers.optim_db`` whose class name
``fastopt.torch.__all__`` exports (so classes added later are picked up) is run here against
``fastopt.torch``, each time side by side with ``torch.optim`` doing the same thing:

- every ``optim_inputs_func(device="cpu", dtype=...)`` configuration, in float32 and float64,
  trains the same MLP (biases, three layers, two parameter groups) for 60 steps to torch's
  losses and parameters (scaled relative tolerance 1e-4 / 1e-11, ``conftest.assert_close``);
  ``differentiable=True`` / ``capturable=True`` are the only settings allowed to be refused, and
  the refusal (ValueError, nothing changed) is asserted, never skipped;
- every ``optim_error_inputs_func(device="cpu", dtype=torch.float32)`` case raises torch's
  exception type (or warning), with a message, changing nothing when construction fails;
- the generic behaviours of torch's ``test/test_optim.py`` (``TestOptimRenewed``) that a CPU
  optimizer can meet, per class.

Ported from ``TestOptimRenewed`` (our test in brackets; each compares with torch.optim where
torch's own test only checks a direction or that nothing raised):

- test_errors [test_error_inputs]
- test_forloop_goes_right_direction, contiguous and not, with and without the OptimizerInfo's
  LR schedulers [test_configuration_trains_like_torch, test_noncontiguous_parameters,
  test_scheduler_inputs_match_torch]
- test_param_group_with_lrscheduler_goes_right_direction [test_scheduler_inputs_match_torch]
- test_tensor_lr (0-, 1- and 2-dimensional) [test_tensor_lr]; tensor betas, which
  optim_db only configures on CUDA [test_tensor_betas]
- test_complex, test_complex_2d [test_complex, test_complex_2d]
- test_foreach_matches_forloop's scenario (_compare_between: grads None for one step, a layer
  frozen and unfrozen, a 0-d parameter) against torch's for-loop [test_freeze_and_skip_match_torch];
  test_fused_matches_forloop's CPU part and foreach=True: fastopt with the flag against torch
  with the flag [test_impl_flags_match_torch]
- test_param_groups_weight_decay, test_param_groups_lr [test_param_groups_lr_and_weight_decay]
- test_step_is_noop_when_params_have_no_grad [test_parameters_without_gradient]
- test_step_is_noop_for_zero_grads [test_zero_gradients]
- test_optimizer_can_be_printed [test_defaults_groups_and_repr_match_torch]
- test_state_dict_deterministic (named and unnamed, both sides) [test_state_dict_deterministic]
- test_can_load_older_state_dict, test_load_nontensor_step [test_load_older_state_dict]
- test_can_load_from_to_named_state_dict [test_param_names]
- test_save_load_equality_with_weights_only [test_save_load_weights_only]
- test_state_dict_pre_hook / _post_hook / _pre_post_hook [test_state_dict_hooks]
- test_load_state_dict_pre_hook_and_prepend / _post_hook / _pre_post_hook
  [test_load_state_dict_hooks]
- test_step_pre_hook, test_step_post_hook, test_step_all_hooks [test_step_hooks]
- test_deepcopy_copies_all_public_attrs [test_deepcopy_copies_all_public_attrs]
- test_non_empty_state [test_non_empty_state]
- test_adamw_serialization [test_adamw_serialization]
- test_grads_are_never_inplaced_into and test_step_iteration (only their names were available
  to read; written from their names) [test_grads_are_never_modified, test_step_counts]

Further torch behaviours checked (from torch/optim/optimizer.py and the classes' code), each
against torch.optim: the signature and the database entry [test_class_is_in_torch_db]; defaults,
groups, repr [test_defaults_groups_and_repr_match_torch]; the state right after construction,
Adagrad's step/sum [test_state_at_construction_matches_torch]; state dicts in torch's format,
loading both ways [test_state_dict_is_torchs_and_loads_both_ways]; ``param_names``
[test_param_names]; closures [test_closure]; add_param_group mid-training and its refusals
[test_add_param_group_mid_training]; zero_grad(set_to_none=True/False) [test_zero_grad];
``state`` a defaultdict whose entries persist and accept other keys
[test_state_is_a_persistent_defaultdict]; ``state_dict()['state'][i][key]`` live as torch's
[test_state_dict_values_are_live_as_torch]; the step dtype under
``torch.set_default_dtype(torch.float64)`` [test_step_counts]; a parameter listed twice
[test_duplicate_parameter]; a new optimizer after the first one is garbage-collected
[test_new_optimizer_after_the_first_is_collected].

Not applicable (CUDA, multi-GPU, MPS, compile, memory sizes, or what fastopt refuses by design):
test_forloop_goes_right_direction_multigpu, test_mixed_device_dtype (several GPUs);
test_set_default_dtype_works_with_foreach (CUDA only; its CPU-meaningful part, the step dtype,
is in test_step_counts); test_foreach_large_tensor, test_fused_large_tensor (2**32 elements,
64-72 GB); test_peak_memory_foreach (CUDA allocator statistics); test_fused_does_not_step_if_foundinf
and test_fused_cpu_matches_cuda (CUDA, grad scaling); test_fused_error_on_params_on_meta (meta
tensors and fused's own device check); test_cpu_load_state_dict, test_state_dict_with_cuda_params
(CPU state moved into CUDA optimizers); test_defaults_changed_to_foreach (patches torch's private
_multi_tensor_* functions; CUDA only); test_second_order_optims_return_consistent_types (LBFGS
only); test_optim_infos_do_not_specify_global_cliquey_kwargs (checks torch's database itself);
test_rosenbrock_sparse (sparse gradients, Adagrad's among ours: fastopt.torch refuses sparse
gradients by design, as tests/test_torch.py asserts; porting it would add that feature); the
differentiable variants of every test (fastopt refuses differentiable=True).

Many of these tests fail against a fastopt.torch that is not yet a full drop-in: that is their
purpose. Each is written so that an optimizer behaving as torch.optim passes it.
"""

from __future__ import annotations

import collections
import copy
import functools
import gc
import inspect
import io
import itertools
import re

import numpy as np
import pytest

torch = pytest.importorskip("torch")

try:
    from torch.testing._internal import common_optimizers as _db
except ImportError as _error:  # common_utils imports expecttest
    pytest.skip(
        "torch.testing._internal.common_optimizers cannot be imported "
        f"({_error}); it needs the expecttest package, which CI installs "
        "(pip install expecttest)",
        allow_module_level=True,
    )

import fastopt.torch as fot  # noqa: E402

from conftest import assert_close  # noqa: E402

Parameter = torch.nn.Parameter

DTYPES = [torch.float32, torch.float64]
DTYPE_IDS = ["f32", "f64"]
RTOL = {torch.float32: 1e-4, torch.float64: 1e-11, torch.complex64: 1e-4}
STEPS = 60  # training steps of the configuration test

# Configurations whose learning rate makes training on this MLP chaotic: (class, desc) -> the
# factor applied to the learning rate on both sides. RMSprop's default lr=0.01 makes the
# trajectory oscillate from about step 40 on: torch.optim against itself, with the initial
# parameters moved by one ulp, deviates in float64 by 3e-16 at the start, 2e-14 after 48 steps
# and 7e-12 after 56 (ten times more every four steps), so no implementation can stay within
# 1e-11 of another; at half the rate the same ulp stays near 1e-15 over the 60 steps.
CHAOTIC_LR_FACTOR = {("RMSprop", "default"): 0.5}

# --------------------------------------------------------------------------------------------
# What is under test: fastopt.torch's classes that torch's database knows
# --------------------------------------------------------------------------------------------


def _fastopt_names() -> list[str]:
    names = []
    for name in getattr(fot, "__all__", ()):
        cls = getattr(fot, name, None)
        # A rule torch lacks (cls.rule.torch_name None) is compared with its own oracle; one
        # that takes sparse gradients only (SparseAdam: torch's database marks it
        # only_supports_sparse_grads), whose generic tests here train on dense ones, in
        # test_oracles_sparse_adam.py. LBFGS, no element-wise rule (it has no ``rule``) and
        # stepped with a closure, is compared with torch's in test_lbfgs_torch.py. Adafactor,
        # no element-wise rule either (its state is not shaped like its parameters) but stepped
        # as the others are, runs every test here.
        rule = getattr(cls, "rule", None)
        if (isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer)
                and cls is not getattr(fot, "Optimizer", None) and (name == "Adafactor" or (
                    rule is not None and rule.torch_name and rule.gradient == "dense"))):
            names.append(name)
    return names


def _of_matrices(name) -> bool:
    """Whether fastopt.torch's class ``name`` steps a rule of matrices (Muon; Adafactor has no
    rule of the engine and takes any shape)."""
    rule = getattr(getattr(fot, name, None), "rule", None)
    return rule is not None and rule.matrix is not None


NAMES = _fastopt_names()
assert NAMES, "fastopt.torch.__all__ exports no torch.optim.Optimizer subclass"
INFOS = {info.name: info for info in _db.optim_db}
DB_NAMES = [n for n in NAMES if n in INFOS]
# The scenarios of some tests are built of vectors (biases, 1-D parameters, a 0-d one), which a
# rule of matrices refuses, torch's Muon as fastopt's: they run over the other rules. Muon's
# own behaviour there is in tests/test_torch.py and tests/test_muon.py.
DB_VECTOR_NAMES = [n for n in DB_NAMES if not _of_matrices(n)]


def F(name):  # noqa: N802 - the fastopt.torch class
    return getattr(fot, name)


def T(name):  # noqa: N802 - the torch.optim class
    return getattr(torch.optim, name)


def _inputs(name, dtype=torch.float32):
    """torch's configurations, made anew (fresh tensors) at every call."""
    return INFOS[name].optim_inputs_func(device="cpu", dtype=dtype)


def _error_inputs(name):
    return INFOS[name].optim_error_inputs_func(device="cpu", dtype=torch.float32)


def _refused_flags(kwargs) -> bool:
    return bool(kwargs.get("differentiable") or kwargs.get("capturable"))


def _has_tensor(kwargs) -> bool:
    return any(isinstance(v, torch.Tensor) or (isinstance(v, tuple) and any(
        isinstance(e, torch.Tensor) for e in v)) for v in kwargs.values())


def _configs(name, dtype=torch.float32):
    """(desc, kwargs factory) per usable configuration; each factory call deep-copies. The
    configurations with tensor hyper-parameters come last, so that a generic test reports
    what else fails before it meets them (test_tensor_lr and the configuration test cover
    them on their own)."""
    out = []
    for inp in _inputs(name, dtype):
        if _refused_flags(inp.kwargs):
            continue  # refused by fastopt: test_impl_flags_match_torch asserts that
        out.append((inp.desc, functools.partial(copy.deepcopy, inp.kwargs)))
    assert out, f"{name}: no configuration"
    return sorted(out, key=lambda c: _has_tensor(c[1]()))


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_") or "x"


def _default(name, key):
    return inspect.signature(T(name)).parameters[key].default


def _has_arg(name, key):
    return key in inspect.signature(T(name)).parameters


# --------------------------------------------------------------------------------------------
# Models, data, comparisons
# --------------------------------------------------------------------------------------------


# Whether the test running is of a rule of matrices (Muon: 2-D parameters only, as torch's):
# its models are then their weight matrices, without biases, and it is matched to the bfloat16
# precision of its Newton–Schulz iteration (tests/test_muon.py) rather than to RTOL.
_MATRICES = {"only": False}
RTOL_MATRIX = 2e-3


@pytest.fixture(autouse=True)
def _models_for_the_rule(request):
    name = getattr(request.node, "callspec", None) and request.node.callspec.params.get("name")
    _MATRICES["only"] = bool(name) and _of_matrices(name)
    yield
    _MATRICES["only"] = False


def _mlp(dtype=torch.float64, seed=0, sizes=(4, 6, 5, 2)):
    """An MLP with biases (none for a rule of matrices); the same values for the same seed."""
    g = torch.Generator().manual_seed(seed)
    layers = []
    for k, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        if k:
            layers.append(torch.nn.Tanh())
        layers.append(torch.nn.Linear(a, b, bias=not _MATRICES["only"]))
    model = torch.nn.Sequential(*layers).to(dtype)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=dtype) * 0.6)
    return model


def _data(dtype=torch.float64, n=16, d_in=4, d_out=2, seed=1):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, d_in, generator=g, dtype=dtype),
            torch.randn(n, d_out, generator=g, dtype=dtype))


def _loss(model, x, y):
    return torch.nn.functional.mse_loss(model(x), y)


def _backward(model, x, y):
    loss = _loss(model, x, y)
    loss.backward()
    return loss


def _train(model, opt, x, y, steps, schedulers=()):
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = _backward(model, x, y)
        opt.step()
        for s in schedulers:
            if isinstance(s, torch.optim.lr_scheduler.ReduceLROnPlateau):
                s.step(loss.item())
            else:
                s.step()
        losses.append(loss.item())
    return np.array(losses)


def _np(t):
    t = t.detach()
    if t.is_complex():
        t = torch.view_as_real(t)
    return t.cpu().numpy()


def _rtol(t):
    return _loss_rtol(t.dtype)


def _loss_rtol(dtype):
    return RTOL_MATRIX if _MATRICES["only"] else RTOL.get(dtype, 1e-4)


def _assert_tensors_close(actual, desired, what):
    assert isinstance(actual, torch.Tensor), f"{what}: {type(actual).__name__}, not a tensor"
    assert actual.dtype == desired.dtype, f"{what}: dtype {actual.dtype} != torch's {desired.dtype}"
    assert actual.shape == desired.shape, f"{what}: shape {tuple(actual.shape)} != {tuple(desired.shape)}"
    assert_close(_np(actual), _np(desired), _rtol(desired), what)


def _assert_params_close(actual, desired, what):
    actual, desired = list(actual), list(desired)
    assert len(actual) == len(desired), what
    for k, (p, q) in enumerate(zip(actual, desired)):
        _assert_tensors_close(p, q, f"{what}: parameter {k}")


def _assert_state_close(actual: dict, desired: dict, what):
    assert set(actual) == set(desired), (
        f"{what}: state keys {sorted(map(str, actual))} != torch's {sorted(map(str, desired))}")
    for key, value in desired.items():
        if isinstance(value, torch.Tensor):
            _assert_tensors_close(actual[key], value, f"{what}[{key!r}]")
        else:
            assert _same(actual[key], value), f"{what}[{key!r}]: {actual[key]!r} != {value!r}"


def _same(a, b) -> bool:
    """Equal values of the same kind (tensors: dtype, shape and values; containers: type)."""
    if isinstance(b, torch.Tensor):
        return (isinstance(a, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape
                and torch.equal(a, b))
    if isinstance(b, (list, tuple)):
        return (type(a) is type(b) and len(a) == len(b)
                and all(_same(x, y) for x, y in zip(a, b)))
    if isinstance(b, dict):
        return isinstance(a, dict) and set(a) == set(b) and all(_same(a[k], b[k]) for k in b)
    if isinstance(b, bool) or isinstance(a, bool):
        return type(a) is type(b) and a == b
    return a == b


def _assert_groups_same(actual: list, desired: list, what):
    """param_groups (or state-dict groups) alike, ``params`` compared by identity or value."""
    assert len(actual) == len(desired), f"{what}: {len(actual)} groups != torch's {len(desired)}"
    for g, (ga, gd) in enumerate(zip(actual, desired)):
        assert set(ga) == set(gd), (
            f"{what}[{g}]: keys {sorted(ga)} != torch's {sorted(gd)}")
        for key in gd:
            if key == "params":
                continue
            assert _same(ga[key], gd[key]), f"{what}[{g}][{key!r}]: {ga[key]!r} != torch's {gd[key]!r}"


def _without(group, *keys):
    return {k: v for k, v in group.items() if k not in keys}


def _assert_state_dicts_close(actual: dict, desired: dict, what):
    assert set(actual) == set(desired), f"{what}: keys {sorted(actual)} != {sorted(desired)}"
    _assert_groups_same(actual["param_groups"], desired["param_groups"], f"{what} param_groups")
    for ga, gd in zip(actual["param_groups"], desired["param_groups"]):
        assert ga["params"] == gd["params"], f"{what}: params {ga['params']} != {gd['params']}"
    sa, sd = actual["state"], desired["state"]
    assert set(sa) == set(sd), f"{what}: state indices {sorted(map(str, sa))} != {sorted(map(str, sd))}"
    for k in sd:
        if isinstance(sd[k], dict):
            _assert_state_close(sa[k], sd[k], f"{what} state[{k!r}]")
        else:
            assert _same(sa[k], sd[k]), f"{what} state[{k!r}]"


def _state_dicts_equal(a: dict, b: dict) -> bool:
    """Bit-for-bit (torch.equal on tensors), as torch's assertEqual on state dicts."""
    return _same(a, b)


def _strip_names(sd):
    sd = copy.deepcopy(sd)
    for group in sd["param_groups"]:
        group.pop("param_names", None)
    return sd


def _as_uninterrupted(opt):
    """torch's load_state_dict casts every state tensor but ``step`` to its parameter's dtype,
    NAdam's 0-d ``mu_product`` (and ASGD's ``eta`` and ``mu``) too, which an uninterrupted
    torch run keeps in float32. fastopt keeps them in float32 after a load as well (SEMANTICS.md: Π is float32; the README
    says so, and test_nadam_mu_product_stays_float32_where_torchs_load_casts_it pins it): this
    puts torch's back, so that both continue as the uninterrupted run would."""
    if not isinstance(opt, fot.Optimizer):  # the scalar state of NAdam, ASGD, ...
        rule = getattr(F(type(opt).__name__), "rule", None)
        scalars = [s.name for s in rule.scalars] if rule is not None else []
        for entry in opt.state.values():
            for key in scalars:
                if key in entry:
                    entry[key] = entry[key].to(torch.float32)
    return opt


def _copy_values(dst_model, src_model):
    with torch.no_grad():
        for p, q in zip(dst_model.parameters(), src_model.parameters()):
            p.copy_(q)


def _two_groups(params, name, kwargs):
    """The parameters split in two groups, the second with half the learning rate."""
    params = list(params)
    lr = kwargs.get("lr", _default(name, "lr"))
    half = float(lr) * 0.5
    if isinstance(lr, torch.Tensor):
        half = torch.tensor(half, dtype=lr.dtype)
    return [{"params": params[:2]}, {"params": params[2:], "lr": half}]


def _tensors_in(obj):
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, dict):
        return _tensors_in(obj.get("params", []))
    if isinstance(obj, (list, tuple)):
        return [t for item in obj for t in _tensors_in(item)]
    return []


def _snapshot(tensors):
    return [(t, t.detach().clone(), t.untyped_storage().data_ptr(), t.grad,
             None if t.grad is None else t.grad.clone()) for t in tensors]


def _assert_unchanged(snap, what):
    for k, (t, value, ptr, grad, grad_value) in enumerate(snap):
        assert t.untyped_storage().data_ptr() == ptr, f"{what}: tensor {k} was moved"
        assert torch.equal(t.detach(), value), f"{what}: tensor {k}'s value changed"
        assert t.grad is grad, f"{what}: tensor {k}'s .grad was replaced"
        if grad is not None:
            assert torch.equal(t.grad, grad_value), f"{what}: tensor {k}'s .grad changed"


def _st(opt, p) -> dict:
    """``opt.state[p]`` as a plain dict; a KeyError (a state that is not torch's defaultdict)
    becomes an assertion naming the problem."""
    try:
        return dict(opt.state[p])
    except KeyError:
        raise AssertionError(f"{type(opt).__module__}.{type(opt).__name__}.state[p] raised KeyError "
                             "for a parameter without state (torch's state is a defaultdict)") from None


def _both(scenario):
    """Run ``scenario(module)`` with torch.optim and with fastopt.torch: (fastopt's, torch's)."""
    return scenario(fot), scenario(torch.optim)


# --------------------------------------------------------------------------------------------
# The database's classes
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_class_is_in_torch_db(name):
    """Each optimizer fastopt.torch exports for a rule torch.optim has (the others are compared
    with their own packages) has an OptimizerInfo in torch's database, a torch.optim class of
    that name, and torch's signature."""
    assert name in INFOS, f"{name} has no OptimizerInfo in torch's optim_db"
    assert hasattr(torch.optim, name), f"torch.optim has no {name}"
    assert issubclass(F(name), torch.optim.Optimizer)
    mine, torchs = inspect.signature(F(name)).parameters, inspect.signature(T(name)).parameters
    # torch's signature, then the storage options every fastopt rule takes
    assert list(mine)[:len(torchs)] == list(torchs)
    assert all(mine[k] == torchs[k] for k in torchs)
    assert list(mine)[len(torchs):] == ["state_dtype", "rounding", "seed"]


# --------------------------------------------------------------------------------------------
# 1. Every configuration trains like torch.optim
# --------------------------------------------------------------------------------------------

CONFIG_CASES = [
    pytest.param(name, dtype, i, id=f"{name}-{did}-{i}-{_slug(inp.desc)}")
    for name in DB_NAMES
    for dtype, did in zip(DTYPES, DTYPE_IDS)
    for i, inp in enumerate(_inputs(name, dtype))
]


def _given_params(params, dtype):
    """A fresh copy of the ``params`` a configuration gives (tensors, groups, or names)."""
    def fresh(t):
        c = t.detach().clone().to(dtype if t.is_floating_point() else t.dtype)
        return Parameter(c) if isinstance(t, Parameter) else c.requires_grad_(t.requires_grad)

    if isinstance(params, torch.Tensor):
        return fresh(params)
    if isinstance(params, dict):
        return {**params, "params": _given_params(params["params"], dtype)}
    if isinstance(params, tuple) and len(params) == 2 and isinstance(params[0], str):
        return (params[0], fresh(params[1]))
    return [_given_params(p, dtype) for p in params]


@pytest.mark.parametrize("name,dtype,index", CONFIG_CASES)
def test_configuration_trains_like_torch(name, dtype, index):
    inp = _inputs(name, dtype)[index]
    if _refused_flags(inp.kwargs):
        # The only configurations fastopt.torch may refuse; it must say so at construction.
        m = _mlp(dtype)
        snap = _snapshot(list(m.parameters()))
        with pytest.raises(ValueError):
            F(name)(m.parameters(), **copy.deepcopy(inp.kwargs))
        _assert_unchanged(snap, "refused configuration")
        return
    x, y = _data(dtype)
    if inp.params is not None:
        # Parameters the configuration gives: a quadratic pull towards fixed targets.
        pf, pt = _given_params(inp.params, dtype), _given_params(inp.params, dtype)
        tf, tt = _tensors_in(pf), _tensors_in(pt)
        g = torch.Generator().manual_seed(3)
        targets = [torch.randn(t.shape, generator=g, dtype=t.dtype) for t in tt]
        of, ot = F(name)(pf, **copy.deepcopy(inp.kwargs)), T(name)(pt, **copy.deepcopy(inp.kwargs))
        for opt, ts in ((of, tf), (ot, tt)):
            for _ in range(STEPS):
                opt.zero_grad()
                loss = sum(((t - c) ** 2).sum() for t, c in zip(ts, targets))
                loss.backward()
                opt.step()
        _assert_params_close(tf, tt, f"{name} {inp.desc}")
        return
    # Two groups (the second at half the learning rate) over the same MLP on both sides.
    mf, mt = _mlp(dtype), _mlp(dtype)
    kf, kt = copy.deepcopy(inp.kwargs), copy.deepcopy(inp.kwargs)
    factor = CHAOTIC_LR_FACTOR.get((name, inp.desc))
    if factor is not None:
        for k in (kf, kt):
            lr = k.get("lr", _default(name, "lr"))
            k["lr"] = lr * factor
    of = F(name)(_two_groups(mf.parameters(), name, kf), **kf)
    ot = T(name)(_two_groups(mt.parameters(), name, kt), **kt)
    lt = _train(mt, ot, x, y, STEPS)
    lf = _train(mf, of, x, y, STEPS)
    what = f"{name}({inp.desc}) {dtype}"
    assert_close(lf, lt, _loss_rtol(dtype), f"{what}: losses")
    _assert_params_close(mf.parameters(), mt.parameters(), what)
    assert not np.allclose(lt[0], lt[-1]), f"{what}: torch's loss did not move"


# --------------------------------------------------------------------------------------------
# foreach / fused / differentiable / capturable
# --------------------------------------------------------------------------------------------

FLAG_CASES = []
for _name in DB_NAMES:
    _info = INFOS[_name]
    for _flag in ("foreach", "fused", "differentiable", "capturable"):
        if _flag == "fused" and "cpu" not in _info.supports_fused_on:
            continue
        if _flag == "capturable" and not _has_arg(_name, "capturable"):
            continue
        if _flag in ("foreach", "differentiable") and not _has_arg(_name, _flag):
            continue
        FLAG_CASES.append(pytest.param(_name, _flag, id=f"{_name}-{_flag}"))


# torch paths that do not compute their for-loop's rule: fastopt keeps the for-loop's (the spec)
# under the flag, and is compared with that. ASGD's foreach path computes η in float32 tensor
# arithmetic (the for-loop: in double, then rounded) and steps p − η (g + λ_wd p + λ p): 1e-8
# from its own for-loop in float64 after 20 steps of this MLP.
FOR_LOOP_RULE = {("ASGD", "foreach")}


@pytest.mark.parametrize("name,flag", FLAG_CASES)
def test_impl_flags_match_torch(name, flag):
    """foreach=True / fused=True train as torch with the same flag (or raise what torch raises
    with it); differentiable=True / capturable=True are refused with ValueError, changing
    nothing."""
    dtype = torch.float64
    x, y = _data(dtype)
    for desc, kw in _configs(name, dtype):
        kf, kt = {**kw(), flag: True}, {**kw(), flag: (name, flag) not in FOR_LOOP_RULE}
        mf, mt = _mlp(dtype), _mlp(dtype)
        if flag in ("differentiable", "capturable"):
            snap = _snapshot(list(mf.parameters()))
            with pytest.raises(ValueError) as info:
                F(name)(mf.parameters(), **kf)
            assert str(info.value), f"{name}({desc}, {flag}=True): empty message"
            _assert_unchanged(snap, f"{name}({desc}, {flag}=True)")
            continue
        try:
            ot = T(name)(mt.parameters(), **kt)
        except Exception as error:  # torch refuses this combination: so must fastopt
            with pytest.raises(type(error)):
                F(name)(mf.parameters(), **kf)
            continue
        of = F(name)(mf.parameters(), **kf)
        lt = _train(mt, ot, x, y, 20)
        lf = _train(mf, of, x, y, 20)
        assert_close(lf, lt, _loss_rtol(dtype), f"{name}({desc}, {flag}=True): losses")
        _assert_params_close(mf.parameters(), mt.parameters(), f"{name}({desc}, {flag}=True)")


# --------------------------------------------------------------------------------------------
# 2. Error inputs
# --------------------------------------------------------------------------------------------

ERROR_CASES = [
    pytest.param(name, i, id=f"{name}-{i}-{_slug(case.optimizer_error_input.desc)}")
    for name in DB_NAMES
    for i, case in enumerate(_error_inputs(name))
]


def _with_grads(params):
    for t in _tensors_in(params):
        if t.grad is None and t.is_floating_point():
            t.grad = torch.rand_like(t)
    return params


@pytest.mark.parametrize("name,index", ERROR_CASES)
def test_error_inputs(name, index):
    case = _error_inputs(name)[index]
    inp = case.optimizer_error_input
    error_type = case.error_type
    what = f"{name}: {inp.desc}"
    if case.error_on == _db.OptimizerErrorEnum.STEP_ERROR:
        opt = F(name)(_with_grads(inp.params), **inp.kwargs)
        if issubclass(error_type, Warning):
            with pytest.warns(error_type):
                opt.step()
        else:
            with pytest.raises(error_type) as info:
                opt.step()
            assert str(info.value), f"{what}: empty message"
        return
    assert case.error_on == _db.OptimizerErrorEnum.CONSTRUCTION_ERROR, case.error_on

    # torch passes params=None where the keyword arguments alone are wrong: so do we, and then
    # again over a real parameter (torch raises there too), which must come out unchanged.
    variants = [("as torch's test", inp.params)]
    if inp.params is None:
        real = [Parameter(torch.randn(2, 3)), Parameter(torch.randn(3))]
        twin = [Parameter(p.detach().clone()) for p in real]
        with pytest.raises(error_type):  # the case is one torch refuses with real parameters
            T(name)(_with_grads(twin), **copy.deepcopy(inp.kwargs))
        variants.append(("over real parameters", _with_grads(real)))
    for how, params in variants:
        kwargs = copy.deepcopy(inp.kwargs)
        if issubclass(error_type, Warning):
            # torch warns and goes on: construction must complete (see test_duplicate_parameter).
            with pytest.warns(error_type) as record:
                F(name)(params, **kwargs)
            assert any(str(w.message) for w in record if issubclass(w.category, error_type))
            continue
        snap = _snapshot(_tensors_in(params))
        with pytest.raises(error_type) as info:
            F(name)(params, **kwargs)
        assert str(info.value).strip(), f"{what} ({how}): empty message"
        _assert_unchanged(snap, f"{what} ({how})")


# --------------------------------------------------------------------------------------------
# 3. Generic behaviours (test_optim.py's TestOptimRenewed and torch/optim/optimizer.py)
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", DB_NAMES)
def test_defaults_groups_and_repr_match_torch(name):
    """defaults, param_groups (keys and values; params the very tensors given) and repr are
    torch's, for every configuration, with a second group overriding the learning rate."""
    for desc, kw in _configs(name):
        mf, mt = _mlp(torch.float32), _mlp(torch.float32)
        kf, kt = kw(), kw()
        gf, gt = _two_groups(mf.parameters(), name, kf), _two_groups(mt.parameters(), name, kt)
        of, ot = F(name)(gf, **kf), T(name)(gt, **kt)
        what = f"{name}({desc})"
        assert _same(of.defaults, ot.defaults), f"{what}: defaults {of.defaults} != torch's {ot.defaults}"
        _assert_groups_same(of.param_groups, ot.param_groups, f"{what} param_groups")
        for group, given in zip(of.param_groups, gf):
            assert len(group["params"]) == len(given["params"])
            assert all(a is b for a, b in zip(group["params"], given["params"])), what
        assert repr(of) == repr(ot), f"{what}: repr\n{of!r}\n!= torch's\n{ot!r}"


@pytest.mark.parametrize("name", DB_NAMES)
def test_state_at_construction_matches_torch(name):
    """The state right after construction is torch's (Adagrad: ``step`` and ``sum`` exist)."""
    for desc, kw in _configs(name):
        mf, mt = _mlp(torch.float32), _mlp(torch.float32)
        of, ot = F(name)(mf.parameters(), **kw()), T(name)(mt.parameters(), **kw())
        # state_dict() first: in torch, reading state[p] adds an (empty) entry for p
        _assert_state_dicts_close(of.state_dict(), ot.state_dict(), f"{name}({desc}) state_dict")
        for k, (p, q) in enumerate(zip(mf.parameters(), mt.parameters())):
            _assert_state_close(_st(of, p), _st(ot, q), f"{name}({desc}) state[{k}]")
        if name == "Adagrad":
            assert {"step", "sum"} <= set(of.state[next(mf.parameters())])


@pytest.mark.parametrize("name", DB_VECTOR_NAMES)
def test_noncontiguous_parameters(name):
    """torch's test_forloop_goes_right_direction(contiguous=False): parameters that are
    non-contiguous views train as in torch (and the loss goes the right way)."""
    dtype = torch.float32
    for desc, kw in _configs(name, dtype):
        g = torch.Generator().manual_seed(0)
        w0 = torch.randn(10, 5, 2, generator=g)
        b0 = torch.randn(10, 2, generator=g)
        inpt = torch.randn(5, generator=g)
        runs = []
        for cls in (F(name), T(name)):
            w, b = Parameter(w0.clone()[..., 0]), Parameter(b0.clone()[..., 0])
            assert not w.is_contiguous()
            opt = cls([w, b], **kw())
            losses = []
            for _ in range(20):
                opt.zero_grad()
                loss = (w.mv(inpt) + b).pow(2).sum()
                loss.backward()
                opt.step()
                losses.append(loss.item())
            runs.append((w, b, np.array(losses), (w.mv(inpt) + b).pow(2).sum().item()))
        (wf, bf, lf, endf), (wt, bt, lt, endt) = runs
        assert_close(lf, lt, _loss_rtol(dtype), f"{name}({desc}): losses")
        _assert_params_close([wf, bf], [wt, bt], f"{name}({desc})")
        maximize = kw().get("maximize", False)
        assert (endf > lf[0]) if maximize else (endf < lf[0]), f"{name}({desc}): wrong direction"


@pytest.mark.parametrize("name", DB_NAMES)
def test_scheduler_inputs_match_torch(name):
    """The OptimizerInfo's LR scheduler combinations, over two groups (the second with its own
    lr, as test_param_group_with_lrscheduler_goes_right_direction), train as in torch."""
    dtype = torch.float64
    x, y = _data(dtype)
    for k, constructors in enumerate(INFOS[name].scheduler_inputs):
        mf, mt = _mlp(dtype), _mlp(dtype)
        pf, pt = list(mf.parameters()), list(mt.parameters())
        of = F(name)([{"params": pf[:2]}, {"params": pf[2:], "lr": 0.01}])
        ot = T(name)([{"params": pt[:2]}, {"params": pt[2:], "lr": 0.01}])
        sf, st = [c(of) for c in constructors], [c(ot) for c in constructors]
        lt = _train(mt, ot, x, y, 20, st)
        lf = _train(mf, of, x, y, 20, sf)
        what = f"{name} schedulers #{k}"
        assert_close(lf, lt, _loss_rtol(dtype), f"{what}: losses")
        _assert_params_close(pf, pt, what)
        assert [g["lr"] for g in of.param_groups] == pytest.approx([g["lr"] for g in ot.param_groups])
        assert lf[-1] < lf[0], f"{what}: the loss did not go down"


@pytest.mark.parametrize("num_dim", [0, 1, 2])
@pytest.mark.parametrize("name", DB_NAMES)
def test_tensor_lr(name, num_dim):
    """A tensor lr (0-, 1- or 2-dimensional, one element) trains as the same float lr in
    torch.optim and as the same tensor lr in torch.optim; changing the tensor in place (as LR
    schedulers do) changes the rate on both sides."""
    dtype = torch.float64
    x, y = _data(dtype)
    for desc, kw in _configs(name, dtype):
        def tensor_kwargs():
            k = kw()
            k["lr"] = torch.tensor(1e-3 if name != "Adadelta" else 0.5).reshape([1] * num_dim)
            return k

        mr, mf, mt = _mlp(dtype), _mlp(dtype), _mlp(dtype)
        kf, kt = tensor_kwargs(), tensor_kwargs()
        or_ = T(name)(mr.parameters(), **{**kw(), "lr": float(kf["lr"])})
        of, ot = F(name)(mf.parameters(), **kf), T(name)(mt.parameters(), **kt)
        what = f"{name}({desc}) lr=tensor of {num_dim} dims"
        lr_ = _train(mr, or_, x, y, 10)
        lt = _train(mt, ot, x, y, 10)
        lf = _train(mf, of, x, y, 10)
        # fastopt computes the per-step scalars from a tensor lr's value in double precision,
        # as from a float lr; torch computes some of them (Adam's lr / (1 - beta1^t)) with the
        # float32 tensor, in float32. So fastopt agrees with torch's float lr to float64's
        # tolerance and with torch's tensor lr to float32's (README, "fastopt.torch").
        assert_close(lf, lr_, _loss_rtol(dtype), f"{what}: losses against a float lr")
        assert_close(lf, lt, _loss_rtol(torch.float32), f"{what}: losses against torch's tensor lr")
        # The group holds the tensor, as torch's does: filling it changes the rate.
        tripled = float(kt["lr"]) * 3
        for opt in (of, ot):
            assert isinstance(opt.param_groups[0]["lr"], torch.Tensor), what
            opt.param_groups[0]["lr"].fill_(tripled)
        or_.param_groups[0]["lr"] = float(of.param_groups[0]["lr"])
        lr_ = _train(mr, or_, x, y, 10)
        lt = _train(mt, ot, x, y, 10)
        lf = _train(mf, of, x, y, 10)
        assert_close(lf, lr_, _loss_rtol(dtype), f"{what}: losses after lr.fill_(), against a float lr")
        assert_close(lf, lt, _loss_rtol(torch.float32), f"{what}: losses after lr.fill_()")
        _assert_params_close(mf.parameters(), mr.parameters(), what)


@pytest.mark.parametrize("name", [n for n in DB_NAMES if _has_arg(n, "betas")])
def test_tensor_betas(name):
    """Tensor betas (0-d, and the 1-element multi-dimensional ones of optim_db's CUDA
    configurations) train as in torch.optim, for every configuration."""
    dtype = torch.float64
    x, y = _data(dtype)
    variants = {
        "0-d": lambda: (torch.tensor(0.9), torch.tensor(0.99)),
        "n-d": lambda: (torch.tensor([[[0.9]]]), torch.tensor([[0.99]])),
    }
    compared = 0
    for desc, kw in _configs(name, dtype):
        for vname, betas in variants.items():
            mf, mt, mr = _mlp(dtype), _mlp(dtype), _mlp(dtype)
            try:
                ot = T(name)(mt.parameters(), **{**kw(), "betas": betas()})
                lt = _train(mt, ot, x, y, 20)
            except RuntimeError:
                # torch itself fails at step() here (NAdam and Adamax broadcast an n-d beta
                # into the update): nothing to compare against.
                assert vname == "n-d", f"torch failed on {vname} betas"
                continue
            of = F(name)(mf.parameters(), **{**kw(), "betas": betas()})
            lf = _train(mf, of, x, y, 20)
            # As with a tensor lr: fastopt computes from the betas' values in double, as from
            # float betas; torch's tensor betas bring float32 arithmetic into its scalars.
            floats = tuple(float(b) for b in betas())
            or_ = T(name)(mr.parameters(), **{**kw(), "betas": floats})
            lr_ = _train(mr, or_, x, y, 20)
            what = f"{name}({desc}) {vname} tensor betas"
            assert_close(lf, lr_, _loss_rtol(dtype), f"{what}: losses against float betas")
            assert_close(lf, lt, _loss_rtol(torch.float32), f"{what}: losses against tensor betas")
            _assert_params_close(mf.parameters(), mr.parameters(), what)
            _assert_groups_same(of.param_groups, ot.param_groups, f"{what} param_groups")
            compared += 1
    assert compared


def _complex_params(seed):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(10, 5, dtype=torch.complex64, generator=g).requires_grad_(),
            torch.randn(10, dtype=torch.complex64, generator=g).requires_grad_(),
            torch.randn(10, 5, dtype=torch.float32, generator=g).requires_grad_()]


COMPLEX_NAMES = [n for n in DB_NAMES if INFOS[n].supports_complex]


@pytest.mark.parametrize("name", COMPLEX_NAMES)
def test_complex(name):
    """Complex parameters (with a real one alongside) step as torch.optim steps them, i.e. as
    their real views; the state matches torch's too."""
    for desc, kw in _configs(name):
        pf, pt = _complex_params(0), _complex_params(0)
        of, ot = F(name)(pf, **kw()), T(name)(pt, **kw())
        g = torch.Generator().manual_seed(1)
        what = f"{name}({desc}) complex"
        for step in range(5):
            for a, b in zip(pf, pt):
                grad = torch.randn(a.shape, dtype=a.dtype, generator=g)
                a.grad, b.grad = grad.clone(), grad.clone()
            ot.step()
            of.step()
            _assert_params_close(pf, pt, f"{what} step {step}")
        for k, (a, b) in enumerate(zip(pf, pt)):
            _assert_state_close(_st(of, a), _st(ot, b), f"{what} state[{k}]")


def _rosenbrock(t):
    x, y = t
    return (1 - x) ** 2 + 100 * (y - x ** 2) ** 2


@pytest.mark.parametrize("name", COMPLEX_NAMES)
def test_complex_2d(name):
    """torch's test_complex_2d: a complex pair optimised on |rosenbrock| moves as torch's, and
    as its real and imaginary parts optimised separately."""
    for desc, kw in _configs(name):
        g = torch.Generator().manual_seed(2)
        a0 = torch.randn(2, dtype=torch.complex64, generator=g)
        af, at = a0.clone().requires_grad_(), a0.clone().requires_grad_()
        re_, im_ = a0.real.clone().requires_grad_(), a0.imag.clone().requires_grad_()
        of, ot = F(name)([af], **kw()), T(name)([at], **kw())
        osplit = F(name)([re_, im_], **kw())
        what = f"{name}({desc}) complex 2d"
        for step in range(5):
            for opt, a in ((of, af), (ot, at)):
                opt.zero_grad()
                _rosenbrock(a).abs().backward()
            osplit.zero_grad()
            _rosenbrock(torch.complex(re_, im_)).abs().backward()
            ot.step()
            of.step()
            osplit.step()
            _assert_tensors_close(af, at, f"{what} step {step}")
            _assert_tensors_close(af.real.detach().clone(), re_.detach(), f"{what} real part, step {step}")
            _assert_tensors_close(af.imag.detach().clone(), im_.detach(), f"{what} imaginary part, step {step}")


def _seq_model(dtype):
    torch.manual_seed(1)
    return torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Sigmoid(),
                               torch.nn.Linear(3, 1), torch.nn.Sigmoid()).to(dtype)


def _freeze_and_skip_run(cls, kwargs, dtype):
    """torch's _compare_between scenario, one side: the model, its parameters (a 0-d one with a
    fixed gradient last) and the optimizer, stepped 7 times; yields after each step."""
    inpt = torch.tensor([0.1, 0.2, 0.3, 0.4, 0.5, 0.6], dtype=dtype).reshape(3, 2)
    model = _seq_model(dtype)
    empty = torch.empty((), dtype=dtype, requires_grad=True)
    with torch.no_grad():
        empty.fill_(0.5)
    empty.grad = torch.full((), 0.25, dtype=dtype)
    params = list(model.parameters()) + [empty]
    opt = cls(params, **kwargs)
    for i in range(7):
        opt.zero_grad()
        if i == 3:
            model[2].requires_grad_(False)  # frozen for two steps
        if i == 5:
            model[2].requires_grad_(True)
        if i != 2:  # no backward: every grad None
            model(inpt).sum().backward()
        opt.step()
        yield params, opt


@pytest.mark.parametrize("name", DB_VECTOR_NAMES)
def test_freeze_and_skip_match_torch(name):
    """torch's _compare_between scenario against torch's for-loop, fastopt with foreach off and
    on: no backward at one step (grads None), a layer frozen for two steps, a 0-d parameter with
    a fixed gradient; parameters and state agree at every step."""
    dtype = torch.float64
    has_foreach = _has_arg(name, "foreach")
    for desc, kw in _configs(name, dtype):
        reference = {**kw(), "foreach": False} if has_foreach else kw()
        for foreach in ((False, True) if has_foreach else (None,)):
            kwargs = kw() if foreach is None else {**kw(), "foreach": foreach}
            what = f"{name}({desc}, foreach={foreach})"
            if foreach:
                try:
                    T(name)([Parameter(torch.zeros(2, dtype=dtype))], **{**kw(), "foreach": True})
                except ValueError:  # torch refuses this with foreach=True (a tensor lr): so must we
                    with pytest.raises(ValueError):
                        F(name)([Parameter(torch.zeros(2, dtype=dtype))], **kwargs)
                    continue
            runs = zip(_freeze_and_skip_run(F(name), kwargs, dtype),
                       _freeze_and_skip_run(T(name), reference, dtype))
            for i, ((pf, of), (pt, ot)) in enumerate(runs):
                _assert_params_close(pf, pt, f"{what} iteration {i}")
                for k, (a, b) in enumerate(zip(pf, pt)):
                    _assert_state_close(_st(of, a), _st(ot, b), f"{what} iteration {i} state[{k}]")


@pytest.mark.parametrize("name", DB_VECTOR_NAMES)
def test_param_groups_lr_and_weight_decay(name):
    """torch's test_param_groups_weight_decay and test_param_groups_lr: per-group
    hyper-parameters override the defaults exactly as in torch."""
    dtype = torch.float32
    for desc, kw in _configs(name, dtype):
        g = torch.Generator().manual_seed(4)
        w0, b0, i0 = torch.randn(10, 5, generator=g), torch.randn(10, generator=g), torch.randn(5, generator=g)
        irr0 = torch.randn(2, generator=g)
        for variant in ("weight_decay", "lr"):
            runs = []
            for cls in (F(name), T(name)):
                w, b, irr = Parameter(w0.clone()), Parameter(b0.clone()), Parameter(irr0.clone())
                k = kw()
                if variant == "weight_decay":
                    groups = [dict(params=[w], **k), dict(params=[b], **{**kw(), "weight_decay": 0.0})]
                    opt = cls(groups)
                else:
                    if "lr" not in k or not float(k["lr"]):
                        k["lr"] = 1e-3
                    opt = cls([dict(params=[w, b], **k), dict(params=[irr])], lr=1e-28)
                gi = torch.Generator().manual_seed(5)
                losses = []
                for _ in range(20):
                    opt.zero_grad()
                    loss = (w.mv(i0) + b).pow(2).sum()
                    loss.backward()
                    irr.grad = torch.rand(irr.shape, generator=gi)
                    opt.step()
                    losses.append(loss.item())
                runs.append((opt, [w, b, irr], np.array(losses)))
            (of, pf, lf), (ot, pt, lt) = runs
            what = f"{name}({desc}) per-group {variant}"
            _assert_groups_same(of.param_groups, ot.param_groups, f"{what} param_groups")
            assert_close(lf, lt, _loss_rtol(dtype), f"{what}: losses")
            _assert_params_close(pf, pt, what)
            if variant == "lr":  # unless torch's moves too (Rprop's sizes start at step_sizes[0])
                assert torch.allclose(pf[2], irr0) or not torch.allclose(pt[2], irr0), (
                    f"{what}: the lr=1e-28 group moved")


@pytest.mark.parametrize("name", DB_VECTOR_NAMES)
def test_parameters_without_gradient(name):
    """Parameters whose grad is None are left untouched (bit for bit) while the others step as
    in torch; parameters that never require grad are a no-op step (with a closure)."""
    dtype = torch.float64
    x, y = _data(dtype)
    for desc, kw in _configs(name, dtype):
        # torch's test_step_is_noop_when_params_have_no_grad
        for cls in (F(name), T(name)):
            ps = [torch.randn(2, 3, dtype=torch.float32) for _ in range(2)]
            old = [p.clone() for p in ps]
            opt = cls(ps, **kw())
            result = opt.step(lambda: torch.tensor([1.0]))
            assert torch.equal(result, torch.tensor([1.0]))
            assert all(torch.equal(p, o) for p, o in zip(ps, old)), f"{cls.__module__}.{name}({desc})"
        # Some parameters without gradient at some steps, side by side with torch.
        mf, mt = _mlp(dtype), _mlp(dtype)
        of, ot = F(name)(mf.parameters(), **kw()), T(name)(mt.parameters(), **kw())
        for step in range(8):
            for model, opt in ((mf, of), (mt, ot)):
                opt.zero_grad()
                _backward(model, x, y)
                ps = list(model.parameters())
                ps[step % len(ps)].grad = None  # a different one each step
                ps[-1].grad = None  # and the last one never
            before = mf[-1].bias.detach().clone()
            skipped = list(mf.parameters())[step % 6].detach().clone()
            ot.step()
            of.step()
            what = f"{name}({desc}) step {step}"
            assert torch.equal(mf[-1].bias.detach(), before), f"{what}: a parameter without grad moved"
            assert torch.equal(list(mf.parameters())[step % 6].detach(), skipped), what
            _assert_params_close(mf.parameters(), mt.parameters(), what)
            for k, (a, b) in enumerate(zip(mf.parameters(), mt.parameters())):
                _assert_state_close(_st(of, a), _st(ot, b), f"{what} state[{k}]")


@pytest.mark.parametrize("name", DB_NAMES)
def test_zero_gradients(name):
    """torch's test_step_is_noop_for_zero_grads: with zero gradients (and no weight decay) a
    step leaves the parameter where torch leaves it: unchanged where torch's is unchanged."""
    for desc, kw in _configs(name):
        k0 = kw()
        if k0.get("weight_decay", 0) != 0:
            continue
        out = []
        for cls in (F(name), T(name)):
            k = kw()
            if name == "AdamW":  # its default weight decay moves parameters: as torch's test
                k["lr"] = torch.tensor(1e-5) if isinstance(k.get("lr"), torch.Tensor) else 1e-5
            p = torch.linspace(-1, 1, 5, dtype=torch.float32).reshape(5, 1).requires_grad_()
            old = p.detach().clone()
            opt = cls([p], **k)
            p.grad = torch.zeros_like(p)
            opt.step(lambda: torch.tensor([1.0]))
            out.append((p.detach().clone(), old))
        (pf, old), (pt, _) = out
        if torch.equal(pt, old):
            assert torch.equal(pf, old), f"{name}({desc}): moved with zero gradients"
        _assert_tensors_close(pf, pt, f"{name}({desc})")


@pytest.mark.parametrize("name", DB_NAMES)
def test_grads_are_never_modified(name):
    """step() reads gradients without writing them (maximize included): the tensor assigned to
    .grad and .grad itself hold the same values after the step, as in torch."""
    for desc, kw in _configs(name):
        for cls in (F(name), T(name)):
            m = _mlp(torch.float32)
            opt = cls(m.parameters(), **kw())
            for _ in range(3):
                grads = [torch.randn(p.shape) for p in m.parameters()]
                copies = [g.clone() for g in grads]
                for p, g in zip(m.parameters(), grads):
                    p.grad = g
                opt.step()
                for k, (p, g, c) in enumerate(zip(m.parameters(), grads, copies)):
                    assert torch.equal(g, c), f"{cls.__module__}.{name}({desc}): grad {k} written"
                    assert torch.equal(p.grad, c), f"{cls.__module__}.{name}({desc}): .grad {k} changed"


@pytest.mark.parametrize("name", DB_NAMES)
def test_step_counts(name):
    """``step`` in the state counts each parameter's own steps, as torch's, in torch's dtype:
    float32, or float64 under torch.set_default_dtype(torch.float64)."""
    x, y = _data(torch.float32)
    for default in (torch.float32, torch.float64):
        old = torch.get_default_dtype()
        torch.set_default_dtype(default)
        try:
            for desc, kw in _configs(name):
                obs = []
                for cls in (F(name), T(name)):
                    m = _mlp(torch.float32)
                    opt = cls(m.parameters(), **kw())
                    for step in range(5):
                        opt.zero_grad()
                        _backward(m, x, y)
                        if step % 2:
                            m[0].weight.grad = None
                        opt.step()
                    obs.append([{k: (v.dtype, v.shape, float(v)) if isinstance(v, torch.Tensor) else v
                                 for k, v in _st(opt, p).items() if k == "step"}
                                for p in m.parameters()])
                assert obs[0] == obs[1], f"{name}({desc}) default {default}: {obs[0]} != torch's {obs[1]}"
        finally:
            torch.set_default_dtype(old)


@pytest.mark.parametrize("name", DB_NAMES)
def test_closure(name):
    """step(closure) calls the closure once, with gradients enabled even under no_grad, and
    returns what it returned (the same object); step() returns None."""
    def scenario(module):
        m = _mlp(torch.float64)
        x, y = _data(torch.float64)
        opt = getattr(module, name)(m.parameters())
        calls = []

        def closure():
            calls.append(torch.is_grad_enabled())
            opt.zero_grad()
            loss = _backward(m, x, y)
            return loss

        results = []
        with torch.no_grad():
            loss = opt.step(closure)
        results.append((type(loss).__name__, calls[:], loss.requires_grad))
        sentinel = object()
        results.append(opt.step(lambda: sentinel) is sentinel)
        results.append(opt.step(closure=closure) is not None)
        results.append(opt.step() is None)
        results.append(len(calls))
        return results, [p.detach().clone() for p in m.parameters()]

    (of, pf), (ot, pt) = _both(scenario)
    assert of == ot
    _assert_params_close(pf, pt, f"{name} closure steps")


@pytest.mark.parametrize("name", DB_VECTOR_NAMES)
def test_add_param_group_mid_training(name):
    """A group added after some steps (with its own lr) trains as in torch; a group repeating a
    parameter, or with names in an unnamed optimizer, is refused with torch's error type and
    changes nothing."""
    dtype = torch.float64
    x, y = _data(dtype)
    for desc, kw in _configs(name, dtype):
        runs = []
        for cls in (F(name), T(name)):
            m = _mlp(dtype)
            ps = list(m.parameters())
            opt = cls(ps[:2], **kw())
            losses = list(_train(m, opt, x, y, 5))
            lr = kw().get("lr", _default(name, "lr"))
            opt.add_param_group({"params": ps[2:4], "lr": float(lr) * 0.5})
            losses += list(_train(m, opt, x, y, 5))
            errors = []
            for bad in ({"params": [ps[0], ps[4]]}, {"params": [("extra", ps[5])]}):
                before = len(opt.param_groups)
                with pytest.raises(Exception) as info:
                    opt.add_param_group(bad)
                errors.append(type(info.value))
                assert len(opt.param_groups) == before
            opt.add_param_group({"params": ps[4:]})
            losses += list(_train(m, opt, x, y, 5))
            runs.append((opt, ps, np.array(losses), errors))
        (of, pf, lf, ef), (ot, pt, lt, et) = runs
        what = f"{name}({desc}) add_param_group"
        assert ef == et, f"{what}: errors {ef} != torch's {et}"
        _assert_groups_same(of.param_groups, ot.param_groups, f"{what} param_groups")
        assert_close(lf, lt, _loss_rtol(dtype), f"{what}: losses")
        _assert_params_close(pf, pt, what)
        _assert_state_dicts_close(of.state_dict(), ot.state_dict(), f"{what} state_dict")


@pytest.mark.parametrize("name", DB_NAMES)
def test_zero_grad(name):
    """zero_grad() (set_to_none=True) makes every .grad None; set_to_none=False zeroes them in
    place (the same tensors), and the next step uses the zero gradients, as in torch."""
    dtype = torch.float64
    x, y = _data(dtype)
    for desc, kw in _configs(name, dtype):
        mf, mt = _mlp(dtype), _mlp(dtype)
        of, ot = F(name)(mf.parameters(), **kw()), T(name)(mt.parameters(), **kw())
        what = f"{name}({desc})"
        for model, opt in ((mf, of), (mt, ot)):
            _train(model, opt, x, y, 3)
            opt.zero_grad()
            assert all(p.grad is None for p in model.parameters()), f"{what}: zero_grad() left a .grad"
            _backward(model, x, y)
            grads = [p.grad for p in model.parameters()]
            opt.zero_grad(set_to_none=False)
            assert all(p.grad is g for p, g in zip(model.parameters(), grads)), (
                f"{what}: zero_grad(set_to_none=False) replaced a .grad")
            assert all(not g.any() for g in grads), f"{what}: a .grad not zeroed"
            opt.step()  # with zero gradients: momentum and decay still act, as in torch
            _backward(model, x, y)
            assert all(p.grad is g for p, g in zip(model.parameters(), grads)), (
                f"{what}: backward after zero_grad(set_to_none=False) replaced a .grad")
            opt.step()
        _assert_params_close(mf.parameters(), mt.parameters(), f"{what} zero_grad")
        for k, (a, b) in enumerate(zip(mf.parameters(), mt.parameters())):
            _assert_state_close(_st(of, a), _st(ot, b), f"{what} state[{k}]")


@pytest.mark.parametrize("name", DB_NAMES)
def test_state_is_a_persistent_defaultdict(name):
    """``state`` is a defaultdict (``state[p]`` of a parameter without state is ``{}``, as in
    torch); the dict for a parameter is the same object at every access; what is stored into
    it survives steps and shows in state_dict(), as in torch; other keys are kept too."""
    def scenario(module):
        m = _mlp(torch.float64)
        x, y = _data(torch.float64)
        # the fullest configuration without tensor hyper-parameters (tested on their own)
        kwargs = [kw for _, kw in _configs(name) if not _has_tensor(kw())][-1]()
        opt = getattr(module, name)(m.parameters(), **kwargs)
        ps = list(m.parameters())
        obs = [isinstance(opt.state, collections.defaultdict)]
        obs.append([sorted(_st(opt, p)) for p in ps])  # {} where torch has no state yet
        _train(m, opt, x, y, 1)
        entry = opt.state[ps[0]]
        obs.append(opt.state[ps[0]] is entry)
        entry["custom"] = 42
        opt.state["note"] = "kept"
        _train(m, opt, x, y, 2)
        obs.append(opt.state[ps[0]] is entry)
        obs.append(opt.state[ps[0]].get("custom"))
        obs.append([k for k in opt.state if not isinstance(k, torch.Tensor)])
        sd = opt.state_dict()
        obs.append(sd["state"].get("note"))
        obs.append(sd["state"][0].get("custom"))
        obs.append(sorted(sd["state"][0]))
        return obs

    of, ot = _both(scenario)
    assert of == ot, f"{name}: {of} != torch's {ot}"


@pytest.mark.parametrize("name", DB_NAMES)
def test_state_dict_values_are_live_as_torch(name):
    """What state_dict() returns is torch's live state: a ``step`` (and each state tensor)
    taken from it keeps changing with later steps exactly as torch's does."""
    dtype = torch.float64
    x, y = _data(dtype)
    for desc, kw in _configs(name, dtype):
        mf, mt = _mlp(dtype), _mlp(dtype)
        of, ot = F(name)(mf.parameters(), **kw()), T(name)(mt.parameters(), **kw())
        _train(mt, ot, x, y, 2)
        _train(mf, of, x, y, 2)
        held_f, held_t = of.state_dict()["state"], ot.state_dict()["state"]
        _train(mt, ot, x, y, 3)
        _train(mf, of, x, y, 3)
        assert set(held_f) == set(held_t), f"{name}({desc})"
        for i in held_t:
            for key, value in held_t[i].items():
                if isinstance(value, torch.Tensor):
                    _assert_tensors_close(held_f[i][key], value,
                                          f"{name}({desc}): state_dict()['state'][{i}][{key!r}] taken earlier")


@pytest.mark.parametrize("name", DB_VECTOR_NAMES)
def test_non_empty_state(name):
    """torch's test_non_empty_state: after a step every state entry is non-empty (and has
    torch's keys)."""
    for desc, kw in _configs(name):
        states = []
        for cls in (F(name), T(name)):
            model = torch.nn.Linear(5, 5)
            with torch.no_grad():
                model.weight.copy_(torch.linspace(-1, 1, 25).reshape(5, 5))
                model.bias.fill_(0.1)
            opt = cls(model.parameters(), **kw())
            model(torch.linspace(0, 1, 10).reshape(2, 5)).sum().backward()
            opt.step()
            assert all(len(s) > 0 for s in opt.state.values()), f"{cls.__module__}.{name}({desc})"
            states.append([sorted(_st(opt, p)) for p in model.parameters()])
        assert states[0] == states[1], f"{name}({desc}): {states[0]} != torch's {states[1]}"


@pytest.mark.parametrize("named0,named1", list(itertools.product([False, True], repeat=2)),
                         ids=lambda v: "named" if v else "plain")
@pytest.mark.parametrize("name", DB_VECTOR_NAMES)
def test_state_dict_deterministic(name, named0, named1):
    """torch's test_state_dict_deterministic: save mid-training, load into a fresh optimizer over
    equal (not identical) parameters, continue both: the same trajectory bit for bit, equal
    state dicts, and a repeated group represented identically."""
    for desc, kw in _configs(name):
        g = torch.Generator().manual_seed(6)
        w = Parameter(torch.randn(2, 3, generator=g))
        b = Parameter(torch.randn(2, generator=g))
        inpt = torch.randn(3, generator=g)

        def named(ps, yes):
            return [(f"name{i}", p) for i, p in enumerate(ps)] if yes else ps

        def fwd_bwd(opt, w_, b_):
            opt.zero_grad()
            loss = (w_.mv(inpt) + b_).pow(2).sum()
            loss.backward()
            return loss

        opt = F(name)(named([w, b], named0), **kw())
        for _ in range(10):
            opt.step(functools.partial(fwd_bwd, opt, w, b))
        with torch.no_grad():
            wc, bc = Parameter(w.clone()), Parameter(b.clone())
        optc = F(name)(named([wc, bc], named1), **kw())
        saved = copy.deepcopy(opt.state_dict())
        passed = copy.deepcopy(saved)
        optc.load_state_dict(passed)
        assert _state_dicts_equal(passed, saved), f"{name}({desc}): load_state_dict changed its argument"
        what = f"{name}({desc})"
        for _ in range(10):
            opt.step(functools.partial(fwd_bwd, opt, w, b))
            optc.step(functools.partial(fwd_bwd, optc, wc, bc))
            assert torch.equal(w, wc) and torch.equal(b, bc), f"{what}: trajectories differ"
        assert _state_dicts_equal(_strip_names(opt.state_dict()), _strip_names(optc.state_dict())), what
        optc.param_groups.extend(optc.param_groups)
        assert _same(_strip_names(opt.state_dict())["param_groups"][-1],
                     _strip_names(optc.state_dict())["param_groups"][-1]), f"{what}: repeated group"


@pytest.mark.parametrize("name", DB_NAMES)
def test_state_dict_is_torchs_and_loads_both_ways(name):
    """state_dict() has torch's format and values; torch's dict and fastopt's dict, each loaded
    into fastopt.torch and into torch.optim, give the same optimizer (groups, state, and the
    trajectory from there), which continues as the optimizer the dict came from."""
    dtype = torch.float64
    x, y = _data(dtype)
    for desc, kw in _configs(name, dtype):
        mf, mt = _mlp(dtype), _mlp(dtype)
        of = F(name)(_two_groups(mf.parameters(), name, kw()), **kw())
        ot = T(name)(_two_groups(mt.parameters(), name, kw()), **kw())
        _train(mt, ot, x, y, 5)
        _train(mf, of, x, y, 5)
        what = f"{name}({desc})"
        sdf, sdt = copy.deepcopy(of.state_dict()), copy.deepcopy(ot.state_dict())
        _assert_state_dicts_close(sdf, sdt, f"{what} state_dict")
        for origin, sd, source_model, source_opt in (("torch's", sdt, mt, ot), ("fastopt's", sdf, mf, of)):
            loaded = []
            for cls in (F(name), T(name)):
                m = _mlp(dtype, seed=9)
                _copy_values(m, source_model)
                opt = cls(_two_groups(m.parameters(), name, kw()), **kw())
                opt.load_state_dict(copy.deepcopy(sd))
                loaded.append((m, _as_uninterrupted(opt)))
            (m_f, o_f), (m_t, o_t) = loaded
            here = f"{what}: {origin} dict loaded"
            _assert_state_dicts_close(o_f.state_dict(), o_t.state_dict(), f"{here}, state_dict")
            for model, opt in loaded:
                _train(model, opt, x, y, 5)
            _train(source_model, source_opt, x, y, 5)
            _assert_state_dicts_close(o_f.state_dict(), o_t.state_dict(), f"{here}, 5 steps on")
            _assert_params_close(m_f.parameters(), m_t.parameters(), f"{here}, 5 steps on")
            _assert_params_close(m_f.parameters(), source_model.parameters(),
                                 f"{here}, against the optimizer it came from")


@pytest.mark.parametrize("name", DB_NAMES)
def test_save_load_weights_only(name):
    """torch's test_save_load_equality_with_weights_only: the state dict survives torch.save /
    torch.load (weights_only too) unchanged, and the loaded copy resumes the trajectory."""
    x, y = _data(torch.float32)
    for desc, kw in _configs(name):
        m = _mlp(torch.float32)
        opt = F(name)(m.named_parameters(), **kw())
        _train(m, opt, x, y, 3)
        sd = opt.state_dict()
        buffer = io.BytesIO()
        torch.save(sd, buffer)
        for weights_only in (False, True):
            buffer.seek(0)
            loaded = torch.load(buffer, weights_only=weights_only)
            assert _state_dicts_equal(loaded, sd), f"{name}({desc}) weights_only={weights_only}"
        m2 = _mlp(torch.float32, seed=5)
        _copy_values(m2, m)
        opt2 = F(name)(m2.named_parameters(), **kw())
        opt2.load_state_dict(loaded)
        _train(m, opt, x, y, 3)
        _train(m2, opt2, x, y, 3)
        assert all(torch.equal(p, q) for p, q in zip(m.parameters(), m2.parameters())), f"{name}({desc})"


def _optional_group_keys(name, kw):
    """The param-group keys torch.optim restores (to its own defaults) when an old state dict
    lacks them: found by asking torch."""
    keys = []
    m = _mlp(torch.float32)
    probe = T(name)(m.parameters(), **kw())
    sd = probe.state_dict()
    for key in sd["param_groups"][0]:
        if key == "params":
            continue
        old = copy.deepcopy(sd)
        for group in old["param_groups"]:
            del group[key]
        fresh = T(name)(_mlp(torch.float32).parameters(), **kw())
        fresh.load_state_dict(old)
        if key in fresh.param_groups[0]:
            keys.append(key)
    return keys


@pytest.mark.parametrize("name", DB_VECTOR_NAMES)
def test_load_older_state_dict(name):
    """torch's test_can_load_older_state_dict and test_load_nontensor_step: a state dict
    without the group keys torch restores (maximize, foreach, differentiable, capturable,
    fused, decoupled_weight_decay, ... as torch's own __setstate__ restores them), and with
    Python-number steps, loads into fastopt as into torch: torch's defaults for the missing
    keys (not the constructor's values), tensor steps of torch's dtype, and torch's
    trajectory afterwards."""
    dtype = torch.float64
    x, y = _data(dtype)
    for desc, kw in _configs(name, dtype):
        optional = _optional_group_keys(name, kw)
        present = set(T(name)([Parameter(torch.zeros(1))], **kw()).param_groups[0])
        assert set(INFOS[name].not_og_supported_flags) & present <= set(optional), optional
        mt = _mlp(dtype)
        ot = T(name)(mt.parameters(), **kw())
        _train(mt, ot, x, y, 3)
        old = copy.deepcopy(ot.state_dict())
        for group in old["param_groups"]:
            for key in optional:
                group.pop(key, None)
        for entry in old["state"].values():
            for key, value in list(entry.items()):
                if key == "step" and isinstance(value, torch.Tensor):
                    entry[key] = value.item()
        runs = []
        for cls in (F(name), T(name)):
            m = _mlp(dtype, seed=3)
            _copy_values(m, mt)
            # Constructed with maximize flipped: the old dict's missing key must take torch's
            # default, not the constructor's value.
            flipped = {"maximize": not kw().get("maximize", False)} if _has_arg(name, "maximize") else {}
            opt = cls(m.parameters(), **{**kw(), **flipped})
            opt.load_state_dict(copy.deepcopy(old))
            _as_uninterrupted(opt)
            groups = copy.deepcopy([_without(g, "params") for g in opt.param_groups])
            steps = [{k: (type(v).__name__, getattr(v, "dtype", None), float(v)) for k, v in _st(opt, p).items()
                      if k == "step"} for p in m.parameters()]
            _train(m, opt, x, y, 3)
            runs.append((groups, steps, m))
        (gf, sf, mf), (gt, st, mt2) = runs
        what = f"{name}({desc}) old state dict without {optional}"
        _assert_groups_same(gf, gt, f"{what}: param_groups")
        assert sf == st, f"{what}: steps {sf} != torch's {st}"
        _assert_params_close(mf.parameters(), mt2.parameters(), what)


@pytest.mark.skipif(not {"Adam", "AdamW"} <= set(DB_NAMES), reason="needs fastopt.torch.Adam and AdamW")
def test_adamw_serialization():
    """torch's test_adamw_serialization: decoupled_weight_decay crosses between Adam and AdamW
    state dicts as in torch (always True in AdamW)."""
    def scenario(module):
        # A model per optimizer (torch's test shares one: test_new_optimizer_after_the_first_
        # is_collected covers that on its own).
        def params():
            return torch.nn.Linear(5, 5).parameters()

        obs = []
        adamw_sd = module.AdamW(params()).state_dict()
        adam = module.Adam(params())
        adam.load_state_dict(copy.deepcopy(adamw_sd))
        obs.append(adam.param_groups[0]["decoupled_weight_decay"])
        adam_sd = module.Adam(params()).state_dict()
        obs.append(adam_sd["param_groups"][0]["decoupled_weight_decay"])
        adamw = module.AdamW(params())
        adamw.load_state_dict(copy.deepcopy(adam_sd))
        obs.append(adamw.param_groups[0]["decoupled_weight_decay"])
        old = copy.deepcopy(adamw_sd)
        del old["param_groups"][0]["decoupled_weight_decay"]
        adamw = module.AdamW(params())
        adamw.load_state_dict(old)
        obs.append(adamw.param_groups[0]["decoupled_weight_decay"])
        return obs

    of, ot = _both(scenario)
    assert of == ot == [True, False, True, True], (of, ot)


@pytest.mark.parametrize("name", DB_NAMES)
def test_param_names(name):
    """``param_names`` (named_parameters() or (name, tensor) pairs) are kept in param_groups and
    state dicts as torch keeps them; loading a dict without names keeps the optimizer's own,
    a dict with names replaces them (torch's rule); torch's test_can_load_from_to_named_state_dict
    in every combination."""
    def scenario(module):
        cls = getattr(module, name)
        obs = []
        x, y = _data(torch.float64)
        m = _mlp(torch.float64)
        opt = cls(m.named_parameters())
        obs.append(opt.param_groups[0].get("param_names"))
        obs.append(opt.state_dict()["param_groups"][0].get("param_names"))
        # two named groups given as (name, tensor) pairs
        named = list(m.named_parameters())
        opt = cls([{"params": named[:2]}, {"params": named[2:], "lr": 0.01}])
        obs.append([g.get("param_names") for g in opt.param_groups])
        obs.append([g.get("param_names") for g in opt.state_dict()["param_groups"]])
        # torch's test_can_load_from_to_named_state_dict
        for named0, named1 in itertools.product([False, True], repeat=2):
            m = _mlp(torch.float64)
            o0 = cls(m.named_parameters() if named0 else m.parameters())
            _train(m, o0, x, y, 3)
            sd = copy.deepcopy(o0.state_dict())
            o1 = cls(m.named_parameters() if named1 else m.parameters())
            o1.load_state_dict(sd)
            _train(m, o1, x, y, 1)
            obs.append((named0, named1, o1.param_groups[0].get("param_names"),
                        o1.state_dict()["param_groups"][0].get("param_names")))
        # a dict with other names replaces the optimizer's
        m = _mlp(torch.float64)
        opt = cls(m.named_parameters())
        sd = copy.deepcopy(opt.state_dict())
        sd["param_groups"][0]["param_names"] = [f"renamed{i}" for i in range(len(sd["param_groups"][0]["params"]))]
        opt.load_state_dict(sd)
        obs.append(opt.param_groups[0].get("param_names"))
        # a dict without names keeps them
        sd = copy.deepcopy(opt.state_dict())
        del sd["param_groups"][0]["param_names"]
        opt.load_state_dict(sd)
        obs.append(opt.param_groups[0].get("param_names"))
        return obs

    of, ot = _both(scenario)
    assert of == ot, f"{name}: {of} != torch's {ot}"


# ----------------------------------------------------------------------------- hooks


@pytest.mark.parametrize("name", DB_VECTOR_NAMES)
def test_step_hooks(name):
    """Step pre/post hooks (local and global) fire in torch's order, with torch's arguments
    (the optimizer, the call's args and kwargs), stop when removed, and a pre-hook's returned
    (args, kwargs) replaces the call's, as in torch."""
    from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook

    def scenario(module):
        log = []
        p = torch.tensor([1.0, 1.0], requires_grad=True)
        opt = getattr(module, name)([p])
        other = torch.optim.SGD([torch.tensor([1.0], requires_grad=True)])

        def recorder(tag):
            def hook(o, args, kwargs):
                log.append((tag, o is opt, o is other, len(args), args[0] is o,
                            [type(a).__name__ for a in args[1:]], sorted(kwargs)))
            return hook

        handles = [register_optimizer_step_pre_hook(recorder("global-pre")),
                   register_optimizer_step_post_hook(recorder("global-post"))]
        try:
            handles += [opt.register_step_pre_hook(recorder("pre")),
                        opt.register_step_post_hook(recorder("post")),
                        other.register_step_pre_hook(recorder("other-pre"))]
            p.grad = torch.ones(2)
            opt.step()
            opt.step(lambda: 1.0)
            opt.step(closure=lambda: 2.0)
            other.step()
            replaced = opt.register_step_pre_hook(lambda o, a, k: (a[:1], {"closure": lambda: "swapped"}))
            result = opt.step()
            replaced.remove()
            log.append(("result", result))
        finally:
            for h in handles:
                h.remove()
        opt.step()
        log.append(("after removal", len(log)))
        return log, p.detach().clone()

    (lf, pf), (lt, pt) = _both(scenario)
    assert lf == lt, f"{name}:\n{lf}\n!= torch's\n{lt}"
    _assert_tensors_close(pf, pt, f"{name}: parameter after the hooked steps")


@pytest.mark.parametrize("name", DB_NAMES)
def test_state_dict_hooks(name):
    """state_dict pre-hooks (which may write into ``state``) and post-hooks (which may edit or
    replace the returned dict) as torch's test_state_dict_pre_hook / _post_hook / _pre_post_hook."""
    def pre(opt):
        opt.state["test"] = 1

    def post(opt, sd):
        if "test" in sd["state"]:
            sd["state"].pop("test")
            sd["ran_state_dict_pre_hook"] = True
        else:
            sd["ran_state_dict_pre_hook"] = False
        return sd

    def scenario(module, kw):
        obs = []

        def make():
            return getattr(module, name)([torch.rand(2, 3, requires_grad=True)], **kw())

        o = make()
        o.register_state_dict_pre_hook(pre)
        obs.append(o.state_dict()["state"].get("test"))
        o = make()
        o.register_state_dict_post_hook(post)
        obs.append(o.state_dict()["ran_state_dict_pre_hook"])
        o = make()
        o.register_state_dict_pre_hook(pre)
        o.register_state_dict_post_hook(post)
        sd = o.state_dict()
        obs.append(("test" in sd["state"], sd["ran_state_dict_pre_hook"]))
        o = make()
        o.register_state_dict_post_hook(lambda opt, sd: {"replaced": True})
        obs.append(o.state_dict())
        o = make()
        order = []
        o.register_state_dict_pre_hook(lambda opt: order.append("a"))
        o.register_state_dict_pre_hook(lambda opt: order.append("b"), prepend=True)
        o.register_state_dict_post_hook(lambda opt, sd: order.append("c"))
        o.register_state_dict_post_hook(lambda opt, sd: order.append("d"), prepend=True)
        o.state_dict()
        obs.append(order)
        return obs

    for desc, kw in _configs(name):
        of, ot = _both(functools.partial(scenario, kw=kw))
        assert of == ot, f"{name}({desc}): {of} != torch's {ot}"


@pytest.mark.parametrize("name", DB_NAMES)
def test_load_state_dict_hooks(name):
    """load_state_dict pre-hooks (given a shallow copy, may edit it or return a replacement;
    prepend order) and post-hooks (which may write into ``state``), as torch's
    test_load_state_dict_pre_hook_and_prepend / _post_hook / _pre_post_hook."""
    def pre1(opt, sd):
        sd["param_groups"][0]["lr"] = 0.002

    def pre2(opt, sd):
        mine = copy.deepcopy(sd)
        mine["param_groups"][0]["lr"] = 0.003
        return mine

    def post(opt):
        opt.state["ran_load_state_dict_pre_hook2"] = opt.param_groups[0]["lr"] == 0.003
        opt.state["ran_load_state_dict_post_hook"] = True

    def scenario(module, kw):
        obs = []

        def make():
            return getattr(module, name)([torch.rand(2, 3, requires_grad=True)], **kw())

        o = make()
        sd = o.state_dict()
        o.register_load_state_dict_pre_hook(pre1)
        o.load_state_dict(sd)
        obs.append(float(o.param_groups[0]["lr"]))
        o.register_load_state_dict_pre_hook(pre2, prepend=True)
        o.load_state_dict(sd)
        obs.append(float(o.param_groups[0]["lr"]))
        o = make()
        o.register_load_state_dict_post_hook(post)
        o.load_state_dict(o.state_dict())
        obs.append((o.state.get("ran_load_state_dict_pre_hook2"), o.state.get("ran_load_state_dict_post_hook")))
        o = make()
        o.register_load_state_dict_pre_hook(pre2)
        o.register_load_state_dict_post_hook(post)
        o.load_state_dict(o.state_dict())
        obs.append((o.state.get("ran_load_state_dict_pre_hook2"), o.state.get("ran_load_state_dict_post_hook")))
        # the pre-hook gets a shallow copy: new top-level keys do not reach the caller's dict
        o = make()
        seen = []

        def peek(opt, d):
            seen.append(sorted(d))
            d["extra"] = 1

        o.register_load_state_dict_pre_hook(peek)
        o.register_load_state_dict_post_hook(lambda opt: seen.append("post"))
        mine = o.state_dict()
        o.load_state_dict(mine)
        obs.append((seen, "extra" in mine))
        return obs

    for desc, kw in _configs(name):
        of, ot = _both(functools.partial(scenario, kw=kw))
        assert of == ot, f"{name}({desc}): {of} != torch's {ot}"


# ----------------------------------------------------------------------------- lifecycle


@pytest.mark.parametrize("name", DB_VECTOR_NAMES)
def test_new_optimizer_after_the_first_is_collected(name):
    """An optimizer garbage-collected, a new one over the same model works and trains as
    torch.optim does from there."""
    x, y = _data(torch.float32, d_in=3)
    m = torch.nn.Linear(3, 2)
    o = F(name)(m.parameters(), lr=0.1)
    del o
    gc.collect()
    opt = F(name)(m.parameters(), lr=0.1)
    ref_model = torch.nn.Linear(3, 2)
    _copy_values(ref_model, m)
    ref = T(name)(ref_model.parameters(), lr=0.1)
    lf = _train(m, opt, x, y, 5)
    lt = _train(ref_model, ref, x, y, 5)
    assert_close(lf, lt, _loss_rtol(torch.float32), f"{name}: losses")
    _assert_params_close(m.parameters(), ref_model.parameters(), name)


@pytest.mark.parametrize("name", DB_NAMES)
def test_duplicate_parameter(name):
    """A parameter listed twice in a group warns as torch (UserWarning) and construction goes
    on. (What torch does next, undecided here: the parameter stays listed twice in the group,
    and torch's for-loop then applies the update to it twice per step, sharing one state.)"""
    p = Parameter(torch.randn(2, 2))
    with pytest.warns(UserWarning, match="(?i)duplicate"):
        F(name)([p, p])


@pytest.mark.parametrize("name", DB_NAMES)
def test_deepcopy_copies_all_public_attrs(name):
    """torch's test_deepcopy_copies_all_public_attrs: an optimizer with state can be deep-copied
    and the copy has the same public attributes (the original keeps training as torch's)."""
    x, y = _data(torch.float32)
    for desc, kw in _configs(name):
        m, mt = _mlp(torch.float32), _mlp(torch.float32)
        opt, ot = F(name)(m.parameters(), **kw()), T(name)(mt.parameters(), **kw())
        _train(m, opt, x, y, 3)
        _train(mt, ot, x, y, 3)
        clone = copy.deepcopy(opt)
        public = {k for k in vars(opt) if not k.startswith("_")}
        assert public == {k for k in vars(clone) if not k.startswith("_")}, f"{name}({desc})"
        assert public == {k for k in vars(ot) if not k.startswith("_")}, f"{name}({desc})"
        _train(m, opt, x, y, 3)
        _train(mt, ot, x, y, 3)
        _assert_params_close(m.parameters(), mt.parameters(), f"{name}({desc}) after deepcopy")
