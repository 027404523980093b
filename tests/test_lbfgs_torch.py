"""fastopt.torch.LBFGS and fastopt.LBFGS against torch.optim.LBFGS (torch 2.13).

fastopt takes the two-loop recursion's dot products in double (the rest with NumPy's BLAS),
in another order than torch's, and its axpys round twice where torch may fuse the
multiply-add: results differ in the last bits per operation. Across many steps L-BFGS turns
those bits into different line-search choices on non-convex problems (the MLP's float64 trajectories part after a few steps), so
whole trajectories are compared on Rosenbrock in float64, and every configuration is compared
step by step from torch's state: both step from the same parameters and the same (loaded)
state dict, 100 steps on end. Measured worst relative differences per step (max |Δx| / max |x|):
float64 4e-10; float32 2.4e-2 (Rosenbrock with the strong-Wolfe search, whose first steps
choose between points of nearly equal loss in float32), 4e-3 elsewhere.
"""

import copy

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import fastopt  # noqa: E402
import fastopt.torch  # noqa: E402

PER_STEP_RTOL = {torch.float64: 1e-9, torch.float32: 5e-2}
CONFIGS = [(ls, hs) for ls in (None, "strong_wolfe") for hs in (3, 100)]


def rosen(x):
    return (100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2).sum()


def problem(name, dtype):
    """Parameters and a loss function: 5-d Rosenbrock or a small MLP regression."""
    torch.manual_seed(0)
    if name == "mlp":
        model = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Tanh(),
                                    torch.nn.Linear(8, 1)).to(dtype)
        x = torch.randn(32, 3, dtype=dtype)
        y = torch.sin(x.sum(1, keepdim=True))
        return list(model.parameters()), lambda: ((model(x) - y) ** 2).mean()
    p = torch.tensor([-1.5, 2.0, 0.5, -0.7, 1.2], dtype=dtype, requires_grad=True)
    return [p], lambda: rosen(p)


def closure_of(opt, loss_fn):
    def closure():
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        return loss
    return closure


def options(line_search_fn, history_size, name):
    # The MLP takes 4 iterations per step so that 100 steps stay quick.
    return dict(history_size=history_size, line_search_fn=line_search_fn,
                lr=1 if line_search_fn else 0.1, max_iter=4 if name == "mlp" else 20)


def as_tensors(value):
    """A NumPy state dict with its arrays and NumPy scalars as tensors (torch's layout)."""
    if isinstance(value, (np.ndarray, np.generic)):
        return torch.from_numpy(np.asarray(value))
    if isinstance(value, dict):
        return {k: as_tensors(v) for k, v in value.items()}
    if isinstance(value, list):
        return [as_tensors(v) for v in value]
    return value


def flat(params):
    return torch.cat([p.detach().reshape(-1) for p in params])


class NumpyFront:
    """fastopt.LBFGS driven like a torch optimizer: arrays copied from and to tensors."""

    def __init__(self, params, loss_fn, **kw):
        self.params, self.loss_fn = params, loss_fn
        self.arrays = [p.detach().numpy().copy() for p in params]
        self.opt = fastopt.LBFGS(self.arrays, **kw)

    def closure(self):
        with torch.no_grad():
            for p, a in zip(self.params, self.arrays):
                p.copy_(torch.from_numpy(a))
        for p in self.params:
            p.grad = None
        with torch.enable_grad():
            loss = self.loss_fn()
            loss.backward()
        return loss.item(), [p.grad.numpy() for p in self.params]

    def step(self):
        self.opt.step(self.closure)
        with torch.no_grad():
            for p, a in zip(self.params, self.arrays):
                p.copy_(torch.from_numpy(a))

    def sync(self, params, state_dict):
        for a, p in zip(self.arrays, params):
            a[...] = p.detach().numpy()
        self.opt.load_state_dict(state_dict)


@pytest.mark.matrix
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("line_search_fn, history_size", CONFIGS)
@pytest.mark.parametrize("name", ["rosenbrock", "mlp"])
def test_every_step_matches_torch(name, dtype, line_search_fn, history_size):
    kw = options(line_search_fn, history_size, name)
    theirs, loss_t = problem(name, dtype)
    ours, loss_o = problem(name, dtype)
    viaa, loss_n = problem(name, dtype)
    ref = torch.optim.LBFGS(theirs, **kw)
    opt = fastopt.torch.LBFGS(ours, **kw)
    numpy_front = NumpyFront(viaa, loss_n, **kw)
    worst = [0.0, 0.0]
    for _ in range(100):
        saved = copy.deepcopy(ref.state_dict())
        with torch.no_grad():
            for p, q in zip(ours, theirs):
                p.copy_(q)
        opt.load_state_dict(saved)
        numpy_front.sync(theirs, saved)
        ref.step(closure_of(ref, loss_t))
        opt.step(closure_of(opt, loss_o))
        numpy_front.step()
        expected = flat(theirs)
        scale = expected.abs().max().item()
        for k, got in enumerate((flat(ours), flat(viaa))):
            worst[k] = max(worst[k], (got - expected).abs().max().item() / scale)
    assert max(worst) <= PER_STEP_RTOL[dtype], worst
    assert opt.state[ours[0]]["func_evals"] > 100  # the runs did iterate


@pytest.mark.parametrize("line_search_fn, history_size", CONFIGS)
def test_rosenbrock_trajectory_matches_torch(line_search_fn, history_size):
    kw = options(line_search_fn, history_size, "rosenbrock")
    theirs, loss_t = problem("rosenbrock", torch.float64)
    ours, loss_o = problem("rosenbrock", torch.float64)
    viaa, loss_n = problem("rosenbrock", torch.float64)
    ref, opt = torch.optim.LBFGS(theirs, **kw), fastopt.torch.LBFGS(ours, **kw)
    numpy_front = NumpyFront(viaa, loss_n, **kw)
    for _ in range(100):
        ref.step(closure_of(ref, loss_t))
        opt.step(closure_of(opt, loss_o))
        numpy_front.step()
        # measured at most 2.5e-9 (history 3, no line search), 1.6e-10 otherwise
        torch.testing.assert_close(flat(ours), flat(theirs), rtol=1e-8, atol=1e-12)
        torch.testing.assert_close(flat(viaa), flat(theirs), rtol=1e-8, atol=1e-12)
    for key in ("func_evals", "n_iter"):
        assert opt.state[ours[0]][key] == ref.state[theirs[0]][key]
        assert numpy_front.opt.state[0][key] == ref.state[theirs[0]][key]


@pytest.mark.parametrize("line_search_fn", [None, "strong_wolfe"])
def test_fastopt_state_dict_loads_into_torch(line_search_fn):
    kw = options(line_search_fn, 3, "rosenbrock")
    ours, loss_o = problem("rosenbrock", torch.float64)
    opt = fastopt.torch.LBFGS(ours, **kw)
    for _ in range(5):
        opt.step(closure_of(opt, loss_o))
    saved = opt.state_dict()
    mirror, mirror_loss = problem("rosenbrock", torch.float64)
    torch_opt = torch.optim.LBFGS(mirror, **kw)
    for _ in range(5):
        torch_opt.step(closure_of(torch_opt, mirror_loss))
    assert set(saved["state"][0]) == set(torch_opt.state_dict()["state"][0])
    assert [type(v) for v in saved["state"][0]["old_dirs"]] == [torch.Tensor] * 3
    theirs, loss_t = problem("rosenbrock", torch.float64)
    with torch.no_grad():
        theirs[0].copy_(ours[0])
    ref = torch.optim.LBFGS(theirs, **kw)
    ref.load_state_dict(copy.deepcopy(saved))
    numpy_front = NumpyFront(*problem("rosenbrock", torch.float64), **kw)
    numpy_front.sync(ours, numpy_front.opt.state_dict())
    numpy_front.opt.load_state_dict(opt.state_dict())
    for _ in range(3):
        opt.step(closure_of(opt, loss_o))
        ref.step(closure_of(ref, loss_t))
        numpy_front.step()
        torch.testing.assert_close(flat(ours), flat(theirs), rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(flat(numpy_front.params), flat(theirs), rtol=1e-9, atol=1e-12)
    # and the NumPy front end's own state dict, its arrays made tensors, loads into torch's
    again = torch.optim.LBFGS(problem("rosenbrock", torch.float64)[0], **kw)
    again.load_state_dict(as_tensors(numpy_front.opt.state_dict()))
    assert again.state_dict()["state"][0]["n_iter"] == ref.state[theirs[0]]["n_iter"]


def test_state_dict_round_trip_continues_identically():
    kw = options("strong_wolfe", 3, "mlp")
    params, loss_fn = problem("mlp", torch.float32)
    opt = fastopt.torch.LBFGS(params, **kw)
    for _ in range(5):
        opt.step(closure_of(opt, loss_fn))
    saved, at = opt.state_dict(), [p.detach().clone() for p in params]
    for _ in range(10):
        opt.step(closure_of(opt, loss_fn))
    other_params, other_loss = problem("mlp", torch.float32)
    with torch.no_grad():
        for p, a in zip(other_params, at):
            p.copy_(a)
    other = fastopt.torch.LBFGS(other_params, **kw)
    other.load_state_dict(saved)
    for _ in range(10):
        other.step(closure_of(other, other_loss))
    assert torch.equal(flat(other_params), flat(params))


def test_is_torchs_class_with_torchs_signature_and_the_storage_options():
    import inspect
    assert issubclass(fastopt.torch.LBFGS, torch.optim.LBFGS)
    theirs = list(inspect.signature(torch.optim.LBFGS).parameters.values())
    mine = list(inspect.signature(fastopt.torch.LBFGS).parameters.values())
    assert mine[:len(theirs)] == theirs
    keyword = inspect.Parameter.KEYWORD_ONLY
    assert [(p.name, p.kind, p.default) for p in mine[len(theirs):]] == [
        ("state_dtype", keyword, None), ("rounding", keyword, None), ("seed", keyword, 0)]
    opt = fastopt.torch.LBFGS([torch.zeros(3, requires_grad=True)])
    assert opt.param_groups[0]["max_eval"] == 25 and opt.param_groups[0]["history_size"] == 100


@pytest.mark.parametrize("make, error", [
    (lambda cls, p: cls([{"params": [p[0]]}, {"params": [p[1]]}]), ValueError),
    (lambda cls, p: cls(p, lr=-1.0), ValueError),
    (lambda cls, p: cls(p, lr=torch.tensor([1.0, 2.0])), ValueError),
])
def test_construction_refused_as_torch_refuses(make, error):
    params = [torch.zeros(3, requires_grad=True), torch.zeros(2, requires_grad=True)]
    for cls in (torch.optim.LBFGS, fastopt.torch.LBFGS):
        with pytest.raises(error):
            make(cls, params)


def test_bad_steps_refused_with_nothing_modified():
    params, loss_fn = problem("rosenbrock", torch.float64)
    opt = fastopt.torch.LBFGS(params, line_search_fn="strong_wolfe")
    opt.step(closure_of(opt, loss_fn))
    before, saved = flat(params).clone(), opt.state_dict()
    with pytest.raises(TypeError):  # torch's too: step needs its closure
        opt.step()
    opt.param_groups[0]["line_search_fn"] = "armijo"
    with pytest.raises(RuntimeError, match="strong_wolfe"):
        opt.step(closure_of(opt, loss_fn))
    opt.param_groups[0]["line_search_fn"] = "strong_wolfe"
    calls = []

    def fails_later():
        calls.append(1)
        if len(calls) > 3:
            raise RuntimeError("model broke")
        return closure_of(opt, loss_fn)()

    with pytest.raises(RuntimeError, match="model broke"):
        opt.step(fails_later)
    assert torch.equal(flat(params), before)
    now = opt.state_dict()["state"][0]
    assert now["n_iter"] == saved["state"][0]["n_iter"]
    assert torch.equal(now["d"], saved["state"][0]["d"])
    bad = copy.deepcopy(saved)
    bad["state"][0]["d"] = torch.zeros(4, dtype=torch.float64)
    with pytest.raises(ValueError):
        opt.load_state_dict(bad)
    assert torch.equal(opt.state_dict()["state"][0]["d"], saved["state"][0]["d"])


def test_refuses_what_it_cannot_step():
    with pytest.raises(TypeError, match="float16"):
        fastopt.torch.LBFGS([torch.zeros(3, dtype=torch.int32)])
    with pytest.raises(TypeError, match="CPU"):
        fastopt.torch.LBFGS([torch.zeros(3, dtype=torch.complex64)])
    with pytest.raises(TypeError, match="dtype"):
        fastopt.torch.LBFGS([torch.zeros(3), torch.zeros(3, dtype=torch.float64)])


def test_a_strided_parameter_steps_as_a_contiguous_one_does_in_torch():
    """A parameter that is a transposed view (not C-contiguous, which torch's own LBFGS
    cannot view flat) is updated in place, as torch updates a contiguous copy."""
    torch.manual_seed(0)
    base = torch.randn(4, 3, dtype=torch.float64)
    ours = torch.nn.Parameter(base.t())
    theirs = torch.nn.Parameter(base.t().contiguous())
    assert not ours.is_contiguous()
    start = theirs.detach().clone()
    weights = torch.linspace(-1, 1, 4, dtype=torch.float64)

    def loss_of(w):
        return lambda: ((torch.tanh(w) @ weights - 1) ** 2).sum()
    ref = torch.optim.LBFGS([theirs], max_iter=5)
    opt = fastopt.torch.LBFGS([ours], max_iter=5)
    for _ in range(10):
        ref.step(closure_of(ref, loss_of(theirs)))
        opt.step(closure_of(opt, loss_of(ours)))
        torch.testing.assert_close(ours.detach(), theirs.detach(), rtol=1e-9, atol=1e-12)
    assert (ours.detach() - start).abs().max() > 0.1  # it moved


def test_under_a_schedule_as_torchs():
    """fastopt.LBFGS under fastopt.lr_scheduler, and fastopt.torch.LBFGS under torch's, follow
    torch.optim.LBFGS under torch's schedule (a step reads the group's lr as it is then), on a
    convex quadratic, where the trajectories cannot part."""
    from fastopt import lr_scheduler

    generator = torch.Generator().manual_seed(0)
    m = torch.randn(6, 6, dtype=torch.float64, generator=generator)
    a, b = m @ m.T + torch.eye(6, dtype=torch.float64), torch.ones(6, dtype=torch.float64)

    def quadratic():
        x = torch.zeros(6, dtype=torch.float64, requires_grad=True)
        return [x], lambda: 0.5 * x @ a @ x - b @ x
    kw = dict(lr=0.2, max_iter=3, history_size=3)
    (theirs, loss_t), (ours, loss_o), (viaa, loss_n) = quadratic(), quadratic(), quadratic()
    ref, opt = torch.optim.LBFGS(theirs, **kw), fastopt.torch.LBFGS(ours, **kw)
    numpy_front = NumpyFront(viaa, loss_n, **kw)
    schedules = [torch.optim.lr_scheduler.StepLR(ref, step_size=5, gamma=0.5),
                 torch.optim.lr_scheduler.StepLR(opt, step_size=5, gamma=0.5),
                 lr_scheduler.StepLR(numpy_front.opt, step_size=5, gamma=0.5)]
    for _ in range(30):
        ref.step(closure_of(ref, loss_t))
        opt.step(closure_of(opt, loss_o))
        numpy_front.step()
        for schedule in schedules:
            schedule.step()
        torch.testing.assert_close(flat(ours), flat(theirs), rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(flat(viaa), flat(theirs), rtol=1e-12, atol=1e-14)
    assert numpy_front.opt.param_groups[0]["lr"] == ref.param_groups[0]["lr"] == 0.2 * 0.5**6
