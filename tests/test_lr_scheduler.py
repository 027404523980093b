"""fastopt.lr_scheduler sets the learning rates (and momenta) that torch.optim.lr_scheduler sets.

Proves, over hundreds of steps and with several parameter groups, that every schedule and its
main options produce torch 2.13's sequence of ``lr`` (and ``momentum`` / beta1 for the cyclic
ones) to 1e-12 relative: both compute the same expressions in Python doubles, so the chainable
forms' rounding is reproduced rather than approximated. Also: ReduceLROnPlateau on a fixed loss
sequence (patience, cooldown, min_lr, eps; both modes, both threshold modes), combinations with
SequentialLR and ChainedScheduler, ``step(epoch)`` and resuming with ``last_epoch``; the two
schedules torch lacks against their formulas; state_dict round trips that resume mid-sequence
identically; bad arguments; and a schedule driving real fastopt optimizers, compared with the
NumPy reference stepped with the same rates set by hand.
"""

from __future__ import annotations

import copy
import math
import pickle
import types
import warnings

import numpy as np
import pytest

import fastopt
from fastopt import lr_scheduler as fl
from fastopt import reference

from conftest import GradStream, assert_close

STEPS = 300
RTOL = 1e-12
GROUP_LRS = (0.1, 0.03, 0.5)


# --------------------------------------------------------------------------------------------
# Optimizers on both sides, and recording a run
# --------------------------------------------------------------------------------------------


def fast_optimizer(kind: str = "SGD", lrs=GROUP_LRS, **kwargs):
    groups = [{"params": [np.zeros(i + 1)], "lr": lr} for i, lr in enumerate(lrs)]
    return getattr(fastopt, kind)(groups, **kwargs)


def torch_optimizer(kind: str = "SGD", lrs=GROUP_LRS, **kwargs):
    torch = pytest.importorskip("torch")
    groups = [{"params": [torch.zeros(i + 1, requires_grad=True)], "lr": lr}
              for i, lr in enumerate(lrs)]
    return getattr(torch.optim, kind)(groups, **kwargs)


def hyper(opt) -> list[float]:
    """lr of every group, then momentum / beta1 of every group that has one."""
    out = [float(g["lr"]) for g in opt.param_groups]
    for g in opt.param_groups:
        if "betas" in g:
            out.append(float(g["betas"][0]))
        elif "momentum" in g:
            out.append(float(g["momentum"]))
    return out


def record(opt, sched, steps: int = STEPS, metrics=None) -> list[list[float]]:
    """Hyper-parameters after construction and after each of ``steps`` steps."""
    rows = [hyper(opt)]
    for i in range(steps):
        if metrics is None:
            sched.step()
        else:
            sched.step(metrics[i])
        rows.append(hyper(opt))
    assert [float(x) for x in sched.get_last_lr()] == rows[-1][: len(opt.param_groups)]
    return rows


def torch_record(build, kind="SGD", opt_kwargs=None, steps=STEPS, metrics=None, lrs=GROUP_LRS):
    torch = pytest.importorskip("torch")
    opt = torch_optimizer(kind, lrs, **(opt_kwargs or {}))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's "scheduler.step() before optimizer.step()"
        return record(opt, build(torch.optim.lr_scheduler, opt), steps, metrics)


def fast_record(build, kind="SGD", opt_kwargs=None, steps=STEPS, metrics=None, lrs=GROUP_LRS):
    opt = fast_optimizer(kind, lrs, **(opt_kwargs or {}))
    return record(opt, build(fl, opt), steps, metrics)


def assert_rows_close(actual, desired, rtol=RTOL, what=""):
    assert len(actual) == len(desired), what
    for step, (a, d) in enumerate(zip(actual, desired)):
        assert len(a) == len(d), f"{what}: step {step}: {a} vs {d}"
        for j, (x, y) in enumerate(zip(a, d)):
            if not math.isclose(x, y, rel_tol=rtol, abs_tol=0.0):
                raise AssertionError(f"{what}: step {step}, entry {j}: {x!r} != {y!r}\n{a}\n{d}")


# --------------------------------------------------------------------------------------------
# Every schedule against torch
# --------------------------------------------------------------------------------------------


class Scale:
    """A callable object with state, as LambdaLR accepts (and state_dict saves)."""

    def __init__(self, rate: float) -> None:
        self.rate = rate

    def __call__(self, epoch: int) -> float:
        return 1.0 / (1.0 + self.rate * epoch)


def _lambda(epoch):
    return 0.97**epoch + 0.01 * math.sin(epoch)


# (id, optimizer kind, optimizer kwargs, builder(module, optimizer) -> schedule)
CASES = [
    ("lambda", "SGD", {}, lambda L, o: L.LambdaLR(o, _lambda)),
    ("lambda-per-group", "SGD", {}, lambda L, o: L.LambdaLR(
        o, [lambda e: e // 30 + 1, _lambda, Scale(0.05)])),
    ("multiplicative", "SGD", {}, lambda L, o: L.MultiplicativeLR(o, lambda e: 0.99)),
    ("multiplicative-per-group", "SGD", {}, lambda L, o: L.MultiplicativeLR(
        o, [lambda e: 0.995, lambda e: 1.0 if e % 7 else 0.8, lambda e: 1 + 0.01 * math.cos(e)])),
    ("step", "SGD", {}, lambda L, o: L.StepLR(o, step_size=7, gamma=0.8)),
    ("step-default-gamma", "SGD", {}, lambda L, o: L.StepLR(o, 100)),
    ("step-1", "SGD", {}, lambda L, o: L.StepLR(o, 1, gamma=0.99)),
    ("multistep", "SGD", {}, lambda L, o: L.MultiStepLR(o, [10, 50, 50, 120, 290], gamma=0.7)),
    ("multistep-default", "SGD", {}, lambda L, o: L.MultiStepLR(o, milestones=[0, 100, 200])),
    ("constant", "SGD", {}, lambda L, o: L.ConstantLR(o)),
    ("constant-factor", "SGD", {}, lambda L, o: L.ConstantLR(o, factor=0.3, total_iters=40)),
    ("constant-1", "SGD", {}, lambda L, o: L.ConstantLR(o, factor=0.9, total_iters=1)),
    ("linear", "SGD", {}, lambda L, o: L.LinearLR(o)),
    ("linear-warmup", "SGD", {}, lambda L, o: L.LinearLR(o, start_factor=0.01, total_iters=50)),
    ("linear-decay", "SGD", {}, lambda L, o: L.LinearLR(o, 1.0, 0.05, total_iters=100)),
    ("linear-to-zero", "SGD", {}, lambda L, o: L.LinearLR(o, 0.5, 0.0, total_iters=77)),
    ("linear-long", "SGD", {}, lambda L, o: L.LinearLR(o, 0.25, 0.75, total_iters=1000)),
    ("exponential", "SGD", {}, lambda L, o: L.ExponentialLR(o, gamma=0.99)),
    ("exponential-up", "SGD", {}, lambda L, o: L.ExponentialLR(o, 1.003)),
    ("polynomial", "SGD", {}, lambda L, o: L.PolynomialLR(o)),
    ("polynomial-100", "SGD", {}, lambda L, o: L.PolynomialLR(o, total_iters=100, power=1.0)),
    ("polynomial-power", "SGD", {}, lambda L, o: L.PolynomialLR(o, total_iters=250, power=2.5)),
    ("polynomial-sqrt", "SGD", {}, lambda L, o: L.PolynomialLR(o, total_iters=160, power=0.5)),
    ("cosine", "SGD", {}, lambda L, o: L.CosineAnnealingLR(o, T_max=300)),
    # Past T_max torch's chainable form climbs back up the cosine; these cross it several times.
    ("cosine-periods", "SGD", {}, lambda L, o: L.CosineAnnealingLR(o, T_max=50)),
    ("cosine-eta-min", "SGD", {}, lambda L, o: L.CosineAnnealingLR(o, 70, eta_min=0.001)),
    ("cosine-1", "SGD", {}, lambda L, o: L.CosineAnnealingLR(o, 1, eta_min=0.01)),
    ("warm-restarts", "SGD", {}, lambda L, o: L.CosineAnnealingWarmRestarts(o, T_0=10)),
    ("warm-restarts-mult", "SGD", {}, lambda L, o: L.CosineAnnealingWarmRestarts(
        o, 7, T_mult=2, eta_min=1e-3)),
    ("warm-restarts-mult3", "SGD", {}, lambda L, o: L.CosineAnnealingWarmRestarts(o, 5, 3)),
    # CyclicLR: modes, asymmetric cycles, custom scale functions, momentum / beta1 cycling.
    ("cyclic-triangular", "SGD", {}, lambda L, o: L.CyclicLR(o, 0.01, 0.1, step_size_up=20)),
    ("cyclic-triangular2", "SGD", {"momentum": 0.5}, lambda L, o: L.CyclicLR(
        o, [0.01, 0.02, 0.001], [0.1, 0.5, 0.01], step_size_up=15, step_size_down=25,
        mode="triangular2")),
    ("cyclic-exp-range", "SGD", {}, lambda L, o: L.CyclicLR(
        o, 0.001, 0.1, step_size_up=10, mode="exp_range", gamma=0.995,
        base_momentum=[0.7, 0.8, 0.85], max_momentum=0.95)),
    ("cyclic-scale-fn-cycle", "SGD", {}, lambda L, o: L.CyclicLR(
        o, 0.01, 0.1, 12, scale_fn=lambda x: 0.5 * (1 + math.sin(x)))),
    ("cyclic-scale-fn-iterations", "SGD", {}, lambda L, o: L.CyclicLR(
        o, 0.01, 0.1, 12, 3, scale_fn=lambda x: 1 / (1 + 0.01 * x), scale_mode="iterations")),
    ("cyclic-sawtooth", "SGD", {}, lambda L, o: L.CyclicLR(o, 0.01, 0.1, 9, step_size_down=0)),
    ("cyclic-no-momentum", "SGD", {}, lambda L, o: L.CyclicLR(
        o, 0.01, 0.1, 20, cycle_momentum=False)),
    ("cyclic-rmsprop", "RMSprop", {}, lambda L, o: L.CyclicLR(o, 0.001, 0.01, 25)),
    ("cyclic-adam", "Adam", {}, lambda L, o: L.CyclicLR(
        o, 1e-4, 1e-2, 30, mode="triangular2", base_momentum=0.85, max_momentum=0.95)),
    ("cyclic-adamw", "AdamW", {"betas": (0.8, 0.99)}, lambda L, o: L.CyclicLR(
        o, 1e-4, 1e-2, 17, 40, mode="exp_range", gamma=0.99)),
    ("cyclic-adagrad-no-momentum", "Adagrad", {}, lambda L, o: L.CyclicLR(
        o, 0.01, 0.1, 20, cycle_momentum=False)),
    ("cyclic-adamax", "Adamax", {}, lambda L, o: L.CyclicLR(o, 1e-4, 1e-2, 25)),
    ("cyclic-nadam", "NAdam", {"betas": (0.8, 0.99)}, lambda L, o: L.CyclicLR(
        o, 1e-4, 1e-2, 15, mode="triangular2")),
    # OneCycleLR: stepped exactly total_steps times (the last extrapolates, as in torch).
    ("onecycle-cos", "SGD", {}, lambda L, o: L.OneCycleLR(o, max_lr=1.0, total_steps=STEPS)),
    ("onecycle-linear", "SGD", {"momentum": 0.9}, lambda L, o: L.OneCycleLR(
        o, [1.0, 0.5, 2.0], total_steps=STEPS, anneal_strategy="linear", pct_start=0.25)),
    ("onecycle-three-phase", "SGD", {}, lambda L, o: L.OneCycleLR(
        o, 0.8, epochs=10, steps_per_epoch=30, three_phase=True, div_factor=10.0,
        final_div_factor=100.0)),
    ("onecycle-three-phase-linear", "RMSprop", {}, lambda L, o: L.OneCycleLR(
        o, 0.01, STEPS, pct_start=0.4, anneal_strategy="linear", three_phase=True,
        base_momentum=[0.8, 0.7, 0.6], max_momentum=0.9)),
    ("onecycle-adam", "Adam", {}, lambda L, o: L.OneCycleLR(o, 0.01, STEPS)),
    ("onecycle-adamw", "AdamW", {}, lambda L, o: L.OneCycleLR(
        o, 0.01, STEPS, pct_start=0.1, anneal_strategy="linear")),
    ("onecycle-pct-0", "SGD", {}, lambda L, o: L.OneCycleLR(o, 0.5, STEPS, pct_start=0.0)),
    ("onecycle-no-momentum", "Adagrad", {}, lambda L, o: L.OneCycleLR(
        o, 0.5, STEPS, cycle_momentum=False)),
    ("onecycle-nadam", "NAdam", {}, lambda L, o: L.OneCycleLR(o, 0.01, STEPS)),
    ("onecycle-adadelta-no-momentum", "Adadelta", {}, lambda L, o: L.OneCycleLR(
        o, 1.0, STEPS, cycle_momentum=False)),
    # Combinations.
    ("sequential-warmup-cosine", "SGD", {}, lambda L, o: L.SequentialLR(
        o, [L.LinearLR(o, 0.1, total_iters=20), L.CosineAnnealingLR(o, 100)], milestones=[20])),
    ("sequential-three", "SGD", {}, lambda L, o: L.SequentialLR(
        o, [L.ConstantLR(o, 0.5, 5), L.ExponentialLR(o, 0.98), L.StepLR(o, 13, 0.5)], [10, 60])),
    ("sequential-restarts-lambda", "SGD", {}, lambda L, o: L.SequentialLR(
        o, [L.CosineAnnealingWarmRestarts(o, 9, 2), L.LambdaLR(o, _lambda),
            L.MultiplicativeLR(o, lambda e: 0.99)], [100, 200])),
    ("sequential-polynomial-multistep", "SGD", {}, lambda L, o: L.SequentialLR(
        o, [L.PolynomialLR(o, 40, 2.0), L.MultiStepLR(o, [30, 60], 0.5),
            L.CosineAnnealingWarmRestarts(o, 11)], [50, 150])),
    ("sequential-cyclic", "SGD", {}, lambda L, o: L.SequentialLR(
        o, [L.LinearLR(o, 0.2, total_iters=10), L.CyclicLR(o, 0.01, 0.1, 15)], [30])),
    ("sequential-first-chained", "SGD", {}, lambda L, o: L.SequentialLR(
        o, [L.ChainedScheduler([L.LinearLR(o, 0.5, total_iters=8), L.ExponentialLR(o, 0.99)]),
            L.CosineAnnealingLR(o, 60, 1e-4)], [40])),
    ("chained-warmup-decay", "SGD", {}, lambda L, o: L.ChainedScheduler(
        [L.LinearLR(o, 0.1, total_iters=25), L.ExponentialLR(o, 0.99)])),
    ("chained-four", "SGD", {}, lambda L, o: L.ChainedScheduler(
        [L.ConstantLR(o, 0.5, 10), L.ExponentialLR(o, 0.995), L.StepLR(o, 40, 0.5),
         L.CosineAnnealingLR(o, 80)], optimizer=o)),
    ("chained-overwrite", "SGD", {}, lambda L, o: L.ChainedScheduler(
        [L.StepLR(o, 10, 0.5), L.LambdaLR(o, lambda e: 1 / (1 + e))])),
    ("chained-multiplicative-polynomial", "SGD", {}, lambda L, o: L.ChainedScheduler(
        [L.MultiplicativeLR(o, lambda e: 0.999), L.PolynomialLR(o, 200, 1.5),
         L.MultiStepLR(o, [5, 5, 25])])),
]
CASE_IDS = [c[0] for c in CASES]


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_sequence_matches_torch(case):
    _, kind, opt_kwargs, build = case
    expected = torch_record(build, kind, opt_kwargs)
    actual = fast_record(build, kind, opt_kwargs)
    assert_rows_close(actual, expected, what=case[0])
    # A schedule that set nothing would pass trivially; every case moves lr at least once.
    assert len({row[0] for row in actual}) > 1


def test_sequences_are_bitwise_torch_for_chainable_forms():
    """Same expressions in the same order: not merely close, equal to the last bit."""
    for name in ("cosine-periods", "cosine-eta-min", "linear-warmup", "polynomial-power",
                 "exponential", "chained-four", "cyclic-exp-range", "onecycle-three-phase"):
        _, kind, opt_kwargs, build = next(c for c in CASES if c[0] == name)
        assert fast_record(build, kind, opt_kwargs) == torch_record(build, kind, opt_kwargs), name


def test_duck_typed_optimizer():
    """Anything with a list of dicts as ``param_groups`` can be scheduled."""
    opt = types.SimpleNamespace(param_groups=[{"lr": 0.1}, {"lr": 0.2, "momentum": 0.0}])
    sched = fl.CosineAnnealingLR(opt, 10)
    for _ in range(10):
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-15)
    assert opt.param_groups[1]["initial_lr"] == 0.2


# --------------------------------------------------------------------------------------------
# step(epoch), fractional epochs, resuming with last_epoch
# --------------------------------------------------------------------------------------------


EPOCH_JUMPS = [0, 3, 4, 17, 17, 5, 40, 100, 99, 250, 1, 0, 64]


@pytest.mark.parametrize("build", [
    lambda L, o: L.StepLR(o, 7, 0.8),
    lambda L, o: L.MultiStepLR(o, [3, 17, 17, 99], 0.5),
    lambda L, o: L.ConstantLR(o, 0.25, 17),
    lambda L, o: L.LinearLR(o, 0.1, 0.9, 60),
    lambda L, o: L.ExponentialLR(o, 0.97),
    lambda L, o: L.PolynomialLR(o, 99, 1.7),
    lambda L, o: L.CosineAnnealingLR(o, 40, 0.002),
    lambda L, o: L.LambdaLR(o, _lambda),
    lambda L, o: L.CyclicLR(o, 0.01, 0.1, 6, mode="triangular2"),
    lambda L, o: L.OneCycleLR(o, 1.0, 300),
], ids=["step", "multistep", "constant", "linear", "exponential", "polynomial", "cosine",
        "lambda", "cyclic", "onecycle"])
def test_step_with_epoch_uses_closed_form_as_torch(build):
    def run(L, opt):
        sched = build(L, opt)
        rows = []
        for e in EPOCH_JUMPS:
            sched.step(e)
            rows.append(hyper(opt) + [sched.last_epoch])
        sched.step()  # and on from there with the chainable form
        rows.append(hyper(opt))
        return rows

    torch = pytest.importorskip("torch")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = run(torch.optim.lr_scheduler, torch_optimizer())
    assert_rows_close(run(fl, fast_optimizer()), expected)


@pytest.mark.parametrize("t_0,t_mult", [(10, 1), (7, 2), (5, 3)])
def test_warm_restarts_fractional_epochs_match_torch(t_0, t_mult):
    torch = pytest.importorskip("torch")
    epochs = [e + i / 8 for e in range(60) for i in range(8)] + [0, 7, 21, 35.5, 3.25, 70, 140]

    def run(L, opt):
        sched = L.CosineAnnealingWarmRestarts(opt, t_0, t_mult, eta_min=1e-4)
        rows = []
        for e in epochs:
            sched.step(e)
            rows.append(hyper(opt) + [sched.last_epoch, float(sched.T_cur), sched.T_i])
        for _ in range(30):
            sched.step()
            rows.append(hyper(opt) + [sched.last_epoch, float(sched.T_cur), sched.T_i])
        return rows

    assert_rows_close(run(fl, fast_optimizer()), run(torch.optim.lr_scheduler, torch_optimizer()))


@pytest.mark.parametrize("build", [
    lambda L, o, e: L.StepLR(o, 7, 0.8, last_epoch=e),
    lambda L, o, e: L.MultiplicativeLR(o, lambda k: 0.99, last_epoch=e),
    lambda L, o, e: L.LinearLR(o, 0.2, 1.0, 30, last_epoch=e),
    lambda L, o, e: L.ExponentialLR(o, 0.97, last_epoch=e),
    lambda L, o, e: L.CosineAnnealingLR(o, 40, last_epoch=e),
    lambda L, o, e: L.CosineAnnealingWarmRestarts(o, 6, 2, last_epoch=e),
    lambda L, o, e: L.LambdaLR(o, _lambda, last_epoch=e),
], ids=["step", "multiplicative", "linear", "exponential", "cosine", "restarts", "lambda"])
def test_constructing_with_last_epoch_matches_torch(build):
    """Resuming by constructor argument: groups carry initial_lr and the current lr."""
    torch = pytest.importorskip("torch")

    def run(L, opt):
        for g, lr in zip(opt.param_groups, GROUP_LRS):
            g["initial_lr"] = lr
            g["lr"] = lr * 0.5
        return record(opt, build(L, opt, 12), 100)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = run(torch.optim.lr_scheduler, torch_optimizer())
    assert_rows_close(run(fl, fast_optimizer()), expected)


# --------------------------------------------------------------------------------------------
# ReduceLROnPlateau
# --------------------------------------------------------------------------------------------


def _losses(mode: str) -> list[float]:
    """Improves, plateaus (exactly and within the threshold), improves, plateaus, ... ."""
    base = ([1.0, 0.9, 0.8] + [0.8] * 6 + [0.79999] * 4 + [0.7, 0.5] + [0.5005, 0.4999] * 8
            + [0.45 - 0.001 * i for i in range(10)] + [0.44] * 40 + [0.3] + [0.31] * 60
            + [math.nan, 0.2] + [0.2] * 30)
    return base if mode == "min" else [-x for x in base]


@pytest.mark.parametrize("mode", ["min", "max"])
@pytest.mark.parametrize("threshold_mode,threshold", [("rel", 1e-4), ("rel", 0.01),
                                                      ("abs", 1e-4), ("abs", 0.005)])
@pytest.mark.parametrize("patience,cooldown,factor,min_lr", [
    (10, 0, 0.1, 0),              # torch's defaults
    (2, 3, 0.5, [1e-3, 1e-4, 0.2]),  # group 2 is floored at once; min_lr per group
    (0, 1, 0.7, 1e-5),
    (3, 0, 0.3, 0.02),
])
def test_reduce_on_plateau_matches_torch(mode, threshold_mode, threshold, patience, cooldown,
                                         factor, min_lr):
    losses = _losses(mode)

    def build(L, o):
        return L.ReduceLROnPlateau(o, mode=mode, factor=factor, patience=patience,
                                   threshold=threshold, threshold_mode=threshold_mode,
                                   cooldown=cooldown, min_lr=min_lr)

    expected = torch_record(build, steps=len(losses), metrics=losses)
    actual = fast_record(build, steps=len(losses), metrics=losses)
    assert actual == expected
    assert len({row[0] for row in actual}) > 2  # the losses trigger several reductions


def test_reduce_on_plateau_by_hand():
    """patience 2, cooldown 1, factor 0.5, min_lr 0.03, eps: written out step by step."""
    opt = fast_optimizer(lrs=(0.1, 0.05))
    sched = fl.ReduceLROnPlateau(opt, patience=2, cooldown=1, factor=0.5, min_lr=0.03,
                                 eps=0.011)
    assert "initial_lr" not in opt.param_groups[0]  # as torch: this one does not set it
    losses = [5.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0, 3.0, 3.0, 3.0, 3.0]
    #          best  best  bad1 bad2 bad3 cool  bad1 bad2 bad3  best bad1 bad2 bad3
    # bad3 reduces. Group 0: 0.1 -> 0.05, then 0.05 -> max(0.025, 0.03) = 0.03, then
    # 0.03 -> 0.03 (no change). Group 1: 0.05 -> 0.03 (a change of 0.02 > eps), then no change.
    expected0 = [0.1, 0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.05, 0.03, 0.03, 0.03, 0.03, 0.03]
    expected1 = [0.05, 0.05, 0.05, 0.05, 0.03, 0.03, 0.03, 0.03, 0.03, 0.03, 0.03, 0.03, 0.03]
    for loss, e0, e1 in zip(losses, expected0, expected1):
        sched.step(loss)
        assert [g["lr"] for g in opt.param_groups] == [e0, e1]
    assert sched.num_bad_epochs == 0 and sched.best == 3.0 and sched.last_epoch == 13


def test_reduce_on_plateau_eps_blocks_small_changes():
    opt = fast_optimizer(lrs=(1e-6,))
    sched = fl.ReduceLROnPlateau(opt, patience=0, factor=0.5, eps=1e-6)
    for loss in [1.0, 1.0, 1.0]:
        sched.step(loss)
    assert opt.param_groups[0]["lr"] == 1e-6


# --------------------------------------------------------------------------------------------
# The two schedules torch lacks
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("decay_rate", [0.0, 0.01, 0.5, 3.0])
def test_inverse_time_formula(decay_rate):
    opt = fast_optimizer()
    rows = record(opt, fl.InverseTimeLR(opt, decay_rate))
    expected = [[lr0 / (1 + decay_rate * e) for lr0 in GROUP_LRS] for e in range(STEPS + 1)]
    assert_rows_close([r[:3] for r in rows], expected)
    assert rows[0][:3] == list(GROUP_LRS)  # epoch 0: lr0 itself


@pytest.mark.parametrize("scale", [1.0, 0.5, 4.0])
def test_inverse_sqrt_formula(scale):
    opt = fast_optimizer()
    sched = fl.InverseSqrtLR(opt, scale=scale)
    # Construction sets the rate of optimizer step t = 1: lr0 * d / sqrt(1).
    assert [g["lr"] for g in opt.param_groups] == [lr0 * scale for lr0 in GROUP_LRS]
    assert sched.last_epoch == 0
    rows = record(opt, sched)
    expected = [[lr0 * scale / math.sqrt(t) for lr0 in GROUP_LRS] for t in range(1, STEPS + 2)]
    assert_rows_close([r[:3] for r in rows], expected)


def test_inverse_schedules_jump_and_chain():
    opt = fast_optimizer()
    sched = fl.InverseSqrtLR(opt, 2.0)
    for e in [5, 0, 99, 3]:
        sched.step(e)
        assert sched.get_last_lr() == [lr0 * 2.0 / math.sqrt(e + 1) for lr0 in GROUP_LRS]
    sched.step()
    assert_rows_close([sched.get_last_lr()], [[lr0 * 2.0 / math.sqrt(5) for lr0 in GROUP_LRS]])

    # Chainable: a warm-up multiplies in.
    opt = fast_optimizer()
    chain = fl.ChainedScheduler([fl.LinearLR(opt, 0.1, total_iters=10), fl.InverseTimeLR(opt, 0.2)])
    rows = record(opt, chain, 50)
    expected = [[lr0 * (0.1 + 0.9 * min(e, 10) / 10) / (1 + 0.2 * e) for lr0 in GROUP_LRS]
                for e in range(51)]
    assert_rows_close([r[:3] for r in rows], expected)

    # In a SequentialLR the inverse schedule restarts at its epoch 0.
    opt = fast_optimizer()
    seq = fl.SequentialLR(opt, [fl.ConstantLR(opt, 0.5, 10), fl.InverseSqrtLR(opt, 3.0)], [10])
    rows = record(opt, seq, 40)
    expected = [[lr0 * (0.5 if e < 10 else 3.0 / math.sqrt(e - 9)) for lr0 in GROUP_LRS]
                for e in range(41)]
    assert_rows_close([r[:3] for r in rows], expected)


# --------------------------------------------------------------------------------------------
# state_dict round trips
# --------------------------------------------------------------------------------------------


ROUND_TRIP_CASES = [c for c in CASES if not c[0].startswith("cyclic-adagrad")] + [
    ("inverse-time", "SGD", {}, lambda L, o: L.InverseTimeLR(o, 0.05)),
    ("inverse-sqrt", "Adam", {}, lambda L, o: L.InverseSqrtLR(o, 2.0)),
]


@pytest.mark.parametrize("case", ROUND_TRIP_CASES, ids=[c[0] for c in ROUND_TRIP_CASES])
def test_state_dict_round_trip_resumes_identically(case, tmp_path):
    _, kind, opt_kwargs, build = case
    split = 137
    opt_a = fast_optimizer(kind, **opt_kwargs)
    sched_a = build(fl, opt_a)
    for _ in range(split):
        sched_a.step()
    state = sched_a.state_dict()
    path = tmp_path / "sched.pkl"
    path.write_bytes(pickle.dumps((opt_a.state_dict(), state)))

    # The usual resume: build the optimizer and the schedule, then load both states.
    opt_b = fast_optimizer(kind, **opt_kwargs)
    sched_b = build(fl, opt_b)
    opt_state, sched_state = pickle.loads(path.read_bytes())
    opt_b.load_state_dict(opt_state)
    sched_b.load_state_dict(sched_state)
    assert getattr(sched_b, "last_epoch", None) == getattr(sched_a, "last_epoch", None)
    assert sched_b.get_last_lr() == sched_a.get_last_lr()
    steps = STEPS - split
    assert record(opt_b, sched_b, steps) == record(opt_a, sched_a, steps)


def test_reduce_on_plateau_state_dict_round_trip():
    losses = _losses("min")
    kwargs = dict(patience=2, cooldown=3, factor=0.5, min_lr=[1e-3, 1e-4, 0.2])
    opt_a = fast_optimizer()
    sched_a = fl.ReduceLROnPlateau(opt_a, **kwargs)
    for loss in losses[:31]:
        sched_a.step(loss)
    opt_b = fast_optimizer()
    sched_b = fl.ReduceLROnPlateau(opt_b, **kwargs)
    opt_b.load_state_dict(opt_a.state_dict())
    sched_b.load_state_dict(pickle.loads(pickle.dumps(sched_a.state_dict())))
    rest = losses[31:]
    assert record(opt_b, sched_b, len(rest), rest) == record(opt_a, sched_a, len(rest), rest)


def test_state_dict_is_a_fresh_copy_and_saves_callable_objects():
    opt = fast_optimizer()
    scale = Scale(0.05)
    sched = fl.LambdaLR(opt, [lambda e: 1.0, _lambda, scale])
    state = sched.state_dict()
    assert state["lr_lambdas"] == [None, None, {"rate": 0.05}]
    state["base_lrs"][0] = 123.0
    state["lr_lambdas"][2]["rate"] = 7.0
    assert sched.base_lrs[0] == GROUP_LRS[0] and scale.rate == 0.05

    other_scale = Scale(0.9)
    opt2 = fast_optimizer()
    sched2 = fl.LambdaLR(opt2, [lambda e: 1.0, _lambda, other_scale])
    sched2.load_state_dict(sched.state_dict())
    assert other_scale.rate == 0.05
    assert "optimizer" not in state


def test_bad_state_dict_raises_and_changes_nothing():
    opt = fast_optimizer()
    sched = fl.StepLR(opt, 3)
    for _ in range(4):
        sched.step()
    before = sched.state_dict()
    with pytest.raises(TypeError, match="state_dict"):
        sched.load_state_dict([1, 2])
    with pytest.raises(ValueError, match="missing"):
        sched.load_state_dict({"last_epoch": 7})
    with pytest.raises(ValueError, match="unexpected"):
        sched.load_state_dict({**before, "bogus": 1})
    other = fl.CosineAnnealingLR(fast_optimizer(), 10).state_dict()
    with pytest.raises(ValueError):
        sched.load_state_dict(other)
    seq = fl.SequentialLR(opt, [fl.StepLR(opt, 3), fl.ExponentialLR(opt, 0.9)], [5])
    seq_before = seq.state_dict()
    bad = copy.deepcopy(seq_before)
    del bad["_schedulers"][1]["gamma"]
    bad["last_epoch"] = 99
    with pytest.raises(ValueError, match="gamma"):
        seq.load_state_dict(bad)
    assert seq.state_dict() == seq_before
    assert sched.state_dict() == before


# --------------------------------------------------------------------------------------------
# Bad arguments
# --------------------------------------------------------------------------------------------


def _o():
    return fast_optimizer()


BAD = [
    (lambda: fl.StepLR(object(), 3), TypeError, "optimizer"),
    (lambda: fl.StepLR([np.zeros(3)], 3), TypeError, "optimizer"),
    (lambda: fl.ReduceLROnPlateau("sgd"), TypeError, "optimizer"),
    (lambda: fl.OneCycleLR(None, 1.0, 10), TypeError, "optimizer"),
    (lambda: fl.StepLR(types.SimpleNamespace(param_groups=[{"momentum": 0.9}]), 3), ValueError,
     "'lr'"),
    (lambda: fl.StepLR(_o(), 0), ValueError, "step_size"),
    (lambda: fl.StepLR(_o(), -5), ValueError, "step_size"),
    (lambda: fl.StepLR(_o(), 2.5), TypeError, "step_size"),
    (lambda: fl.StepLR(_o(), 3, gamma=-0.1), ValueError, "gamma"),
    (lambda: fl.StepLR(_o(), 3, last_epoch=-2), ValueError, "last_epoch"),
    (lambda: fl.StepLR(_o(), 3, last_epoch=5), ValueError, "initial_lr"),
    (lambda: fl.MultiStepLR(_o(), [30, 10]), ValueError, "non-decreasing"),
    (lambda: fl.MultiStepLR(_o(), [-1, 10]), ValueError, "milestones"),
    (lambda: fl.MultiStepLR(_o(), 10), TypeError, "milestones"),
    (lambda: fl.MultiStepLR(_o(), [1.5]), TypeError, "milestones"),
    (lambda: fl.LambdaLR(_o(), [lambda e: 1.0]), ValueError, "lr_lambda"),
    (lambda: fl.LambdaLR(_o(), 0.5), TypeError, "lr_lambda"),
    (lambda: fl.MultiplicativeLR(_o(), [lambda e: 1.0, 2, 3]), TypeError, "lr_lambda"),
    (lambda: fl.ConstantLR(_o(), factor=1.5), ValueError, "factor"),
    (lambda: fl.ConstantLR(_o(), total_iters=0), ValueError, "total_iters"),
    (lambda: fl.LinearLR(_o(), start_factor=0.0), ValueError, "start_factor"),
    (lambda: fl.LinearLR(_o(), end_factor=1.1), ValueError, "end_factor"),
    (lambda: fl.LinearLR(_o(), total_iters=-3), ValueError, "total_iters"),
    (lambda: fl.ExponentialLR(_o(), gamma=math.nan), ValueError, "gamma"),
    (lambda: fl.ExponentialLR(_o(), gamma="0.9"), TypeError, "gamma"),
    (lambda: fl.PolynomialLR(_o(), total_iters=0), ValueError, "total_iters"),
    (lambda: fl.PolynomialLR(_o(), power=-1.0), ValueError, "power"),
    (lambda: fl.CosineAnnealingLR(_o(), T_max=0), ValueError, "T_max"),
    (lambda: fl.CosineAnnealingLR(_o(), 10, eta_min=-1.0), ValueError, "eta_min"),
    (lambda: fl.CosineAnnealingWarmRestarts(_o(), T_0=0), ValueError, "T_0"),
    (lambda: fl.CosineAnnealingWarmRestarts(_o(), 10, T_mult=0), ValueError, "T_mult"),
    (lambda: fl.CosineAnnealingWarmRestarts(_o(), 10, T_mult=1.5), TypeError, "T_mult"),
    (lambda: fl.CosineAnnealingWarmRestarts(_o(), 10, eta_min="0"), TypeError, "eta_min"),
    (lambda: fl.CosineAnnealingWarmRestarts(_o(), 10).step(-1), ValueError, "epoch"),
    (lambda: fl.InverseTimeLR(_o(), -0.5), ValueError, "decay_rate"),
    (lambda: fl.InverseSqrtLR(_o(), 0.0), ValueError, "scale"),
    (lambda: fl.ReduceLROnPlateau(_o(), mode="avg"), ValueError, "mode"),
    (lambda: fl.ReduceLROnPlateau(_o(), threshold_mode="pct"), ValueError, "threshold_mode"),
    (lambda: fl.ReduceLROnPlateau(_o(), factor=1.0), ValueError, "factor"),
    (lambda: fl.ReduceLROnPlateau(_o(), factor=-0.5), ValueError, "factor"),
    (lambda: fl.ReduceLROnPlateau(_o(), patience=-1), ValueError, "patience"),
    (lambda: fl.ReduceLROnPlateau(_o(), cooldown=-1), ValueError, "cooldown"),
    (lambda: fl.ReduceLROnPlateau(_o(), threshold=-1e-4), ValueError, "threshold"),
    (lambda: fl.ReduceLROnPlateau(_o(), min_lr=[0.1, 0.2]), ValueError, "min_lr"),
    (lambda: fl.ReduceLROnPlateau(_o(), eps=-1.0), ValueError, "eps"),
    (lambda: fl.CyclicLR(_o(), 0.01, 0.1, mode="sine"), ValueError, "mode"),
    (lambda: fl.CyclicLR(_o(), 0.01, 0.1, step_size_up=0), ValueError, "step_size_up"),
    (lambda: fl.CyclicLR(_o(), 0.01, 0.1, step_size_up=-5), ValueError, "step_size_up"),
    (lambda: fl.CyclicLR(_o(), 0.01, 0.1, step_size_down=-1), ValueError, "step_size_down"),
    (lambda: fl.CyclicLR(_o(), 0.01, [0.1, 0.2]), ValueError, "max_lr"),
    (lambda: fl.CyclicLR(_o(), -0.01, 0.1), ValueError, "base_lr"),
    (lambda: fl.CyclicLR(_o(), 0.01, 0.1, scale_fn=3), TypeError, "scale_fn"),
    (lambda: fl.CyclicLR(_o(), 0.01, 0.1, scale_fn=abs, scale_mode="x"), ValueError,
     "scale_mode"),
    (lambda: fl.CyclicLR(_o(), 0.01, 0.1, cycle_momentum=1), TypeError, "cycle_momentum"),
    (lambda: fl.CyclicLR(fast_optimizer("Adagrad"), 0.01, 0.1), ValueError, "momentum or beta1"),
    (lambda: fl.OneCycleLR(fast_optimizer("Adagrad"), 0.1, 10), ValueError, "momentum or beta1"),
    (lambda: fl.OneCycleLR(_o(), 0.1), ValueError, "total_steps"),
    (lambda: fl.OneCycleLR(_o(), 0.1, epochs=3), ValueError, "total_steps"),
    (lambda: fl.OneCycleLR(_o(), 0.1, 0), ValueError, "total_steps"),
    (lambda: fl.OneCycleLR(_o(), 0.1, epochs=0, steps_per_epoch=3), ValueError, "epochs"),
    (lambda: fl.OneCycleLR(_o(), 0.1, epochs=2, steps_per_epoch=-3), ValueError,
     "steps_per_epoch"),
    (lambda: fl.OneCycleLR(_o(), 0.1, 10, pct_start=1.5), ValueError, "pct_start"),
    (lambda: fl.OneCycleLR(_o(), 0.1, 10, anneal_strategy="exp"), ValueError, "anneal_strategy"),
    (lambda: fl.OneCycleLR(_o(), [0.1], 10), ValueError, "max_lr"),
    (lambda: fl.OneCycleLR(_o(), 0.1, 10, div_factor=0), ValueError, "div_factor"),
    (lambda: fl.OneCycleLR(_o(), 0.1, 10, base_momentum=[0.8]), ValueError, "base_momentum"),
    (lambda: fl.ChainedScheduler([]), ValueError, "at least one"),
    (lambda: fl.ChainedScheduler([3]), TypeError, "schedulers"),
    (lambda: fl.ChainedScheduler([fl.StepLR(_o(), 3), fl.StepLR(_o(), 3)]), ValueError,
     "same optimizer"),
    (lambda: fl.ChainedScheduler([fl.ReduceLROnPlateau(_o())]), ValueError, "ReduceLROnPlateau"),
]


@pytest.mark.parametrize("make,exc,fragment", BAD, ids=[f"bad{i}" for i in range(len(BAD))])
def test_bad_arguments_raise(make, exc, fragment):
    with pytest.raises(exc, match=fragment):
        make()


def test_sequential_bad_arguments():
    opt = _o()
    a, b = fl.StepLR(opt, 3), fl.ExponentialLR(opt, 0.9)
    with pytest.raises(ValueError, match="one more"):
        fl.SequentialLR(opt, [a, b], [5, 10])
    with pytest.raises(ValueError, match="at least one"):
        fl.SequentialLR(opt, [], [])
    with pytest.raises(ValueError, match="strictly increasing"):
        fl.SequentialLR(opt, [a, b, fl.StepLR(opt, 2)], [10, 10])
    with pytest.raises(ValueError, match="milestones"):
        fl.SequentialLR(opt, [a, b], [0])
    with pytest.raises(ValueError, match="ReduceLROnPlateau"):
        fl.SequentialLR(opt, [a, fl.ReduceLROnPlateau(opt)], [5])
    with pytest.raises(ValueError, match="same optimizer"):
        fl.SequentialLR(opt, [a, fl.StepLR(_o(), 3)], [5])
    with pytest.raises(ValueError, match="first"):  # torch fails at the milestone instead
        fl.SequentialLR(opt, [a, fl.ChainedScheduler([b])], [5])
    with pytest.raises(TypeError, match="schedule"):
        fl.SequentialLR(opt, [a, "b"], [5])


def test_refusals_change_nothing():
    opt = fast_optimizer("SGD", momentum=0.3)
    before = copy.deepcopy([{k: v for k, v in g.items() if k != "params"}
                            for g in opt.param_groups])
    with pytest.raises(ValueError):
        fl.CyclicLR(opt, 0.01, 0.1, mode="bogus")
    with pytest.raises(ValueError):
        fl.OneCycleLR(opt, 1.0, 10, anneal_strategy="bogus")
    after = [{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups]
    assert after == before


@pytest.mark.parametrize("kind", ["Adagrad", "Adadelta"])
def test_cyclic_schedules_refuse_adagrad_like_torch(kind):
    torch = pytest.importorskip("torch")
    for L, opt in ((fl, fast_optimizer(kind)), (torch.optim.lr_scheduler, torch_optimizer(kind))):
        with pytest.raises(ValueError, match="momentum or beta1"):
            L.CyclicLR(opt, 0.01, 0.1)
        with pytest.raises(ValueError, match="momentum or beta1"):
            L.OneCycleLR(opt, 0.1, 100)


def test_onecycle_refuses_steps_past_total_and_changes_nothing():
    torch = pytest.importorskip("torch")
    total = 25
    sides = ((fl, fast_optimizer("Adam")), (torch.optim.lr_scheduler, torch_optimizer("Adam")))
    for L, opt in sides:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sched = L.OneCycleLR(opt, 0.1, total)
            for _ in range(total):  # total_steps calls are allowed after construction
                sched.step()
            with pytest.raises(ValueError, match=f"Tried to step {total + 1} times"):
                sched.step()
    # torch leaves last_epoch advanced after the refusal; fastopt leaves everything as it was.
    opt = fast_optimizer("Adam")
    sched = fl.OneCycleLR(opt, 0.1, total)
    for _ in range(total):
        sched.step()
    state, groups = sched.state_dict(), hyper(opt)
    with pytest.raises(ValueError):
        sched.step()
    assert sched.state_dict() == state and hyper(opt) == groups


def test_where_torch_divides_by_zero():
    """Cases torch accepts and then crashes on (ZeroDivisionError) give sensible values here."""
    opt = fast_optimizer()
    sched = fl.ConstantLR(opt, factor=0.0, total_iters=3)
    rows = [r[:3] for r in record(opt, sched, 5)]
    assert rows == [[0.0] * 3] * 3 + [list(GROUP_LRS)] * 3
    # pct_start * total_steps == 1: a one-step warm-up ends (at max_lr) at step 0.
    opt = fast_optimizer()
    sched = fl.OneCycleLR(opt, 1.0, total_steps=10, pct_start=0.1, cycle_momentum=False)
    assert [g["lr"] for g in opt.param_groups] == [1.0] * 3
    for _ in range(9):
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(1.0 / 25 / 1e4, rel=1e-12)
    # pct_start = 1: the last allowed step (total_steps) lands in an empty final phase.
    opt = fast_optimizer()
    sched = fl.OneCycleLR(opt, 1.0, total_steps=10, pct_start=1.0, anneal_strategy="linear")
    for _ in range(10):
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(1.0 / 25 / 1e4, rel=1e-12)
    assert opt.param_groups[0]["momentum"] == pytest.approx(0.95, rel=1e-12)


def test_cyclic_starts_at_base_lr_even_after_another_schedule():
    """torch's CyclicLR takes its construction step from a stale initial_lr; not here."""
    opt = fast_optimizer()
    fl.StepLR(opt, 5)  # leaves initial_lr = lr in every group
    sched = fl.CyclicLR(opt, 0.001, 0.01, step_size_up=4)
    assert sched.get_last_lr() == [0.001] * 3
    sched.step()
    assert sched.get_last_lr() == pytest.approx([0.001 + 0.009 / 4] * 3, rel=1e-12)


def test_cyclic_momentum_is_set_from_construction():
    """SEMANTICS.md: a group built with momentum 0 gets max_momentum at once; beta2 is kept."""
    opt = fast_optimizer("SGD")
    fl.CyclicLR(opt, 0.01, 0.1, 10, base_momentum=0.8, max_momentum=0.9)
    assert [g["momentum"] for g in opt.param_groups] == [0.9] * 3
    adam = fast_optimizer("Adam", betas=(0.5, 0.97))
    fl.OneCycleLR(adam, 0.1, 100, max_momentum=0.95)
    assert [g["betas"] for g in adam.param_groups] == [(0.95, 0.97)] * 3


# --------------------------------------------------------------------------------------------
# A schedule driving real fastopt optimizers
# --------------------------------------------------------------------------------------------


def _train(opt, sched, grads, steps):
    for t in range(1, steps + 1):
        opt.step(grads(t))
        sched.step()


def test_step_lr_drives_sgd_like_the_reference_with_rates_set_by_hand():
    shapes = [(7,), (3, 5), (1000,)]
    grads = GradStream(shapes, np.float64, seed=3)
    params = [np.random.default_rng(i).standard_normal(s) for i, s in enumerate(shapes)]
    ours = [p.copy() for p in params]
    ref_params = [p.copy() for p in params]
    const_params = [p.copy() for p in params]

    opt = fastopt.SGD(ours, lr=0.1, momentum=0.9)
    sched = fl.StepLR(opt, step_size=10, gamma=0.5)
    _train(opt, sched, grads, 30)

    ref = reference.SGD(ref_params, lr=0.1, momentum=0.9)
    for t in range(1, 31):
        ref.param_groups[0]["lr"] = 0.1 * 0.5 ** ((t - 1) // 10)
        ref.step(grads(t))
    for i, (a, r) in enumerate(zip(ours, ref_params)):
        assert_close(a, r, 1e-12, f"param {i}")

    const = fastopt.SGD(const_params, lr=0.1, momentum=0.9)
    for t in range(1, 31):
        const.step(grads(t))
    assert not np.allclose(ours[2], const_params[2], rtol=1e-6)  # the schedule mattered


@pytest.mark.parametrize("kind", ["Adam", "Adamax", "NAdam"])
def test_onecycle_drives_adam_with_cycled_beta1_like_the_reference(kind):
    shapes = [(11,), (4, 4)]
    grads = GradStream(shapes, np.float64, seed=5)
    params = [np.random.default_rng(10 + i).standard_normal(s) for i, s in enumerate(shapes)]
    ours = [p.copy() for p in params]
    ref_params = [p.copy() for p in params]
    steps = 40

    opt = getattr(fastopt, kind)(ours, lr=1e-3)
    sched = fl.OneCycleLR(opt, max_lr=0.05, total_steps=steps)
    schedule = []
    for t in range(1, steps + 1):
        schedule.append((opt.param_groups[0]["lr"], opt.param_groups[0]["betas"]))
        opt.step(grads(t))
        sched.step()
    assert len({b for _, b in schedule}) > 10  # beta1 did cycle

    ref = getattr(reference, kind)(ref_params, lr=1e-3)
    for t, (lr, betas) in enumerate(schedule, start=1):
        ref.param_groups[0]["lr"] = lr
        ref.param_groups[0]["betas"] = betas
        ref.step(grads(t))
    for i, (a, r) in enumerate(zip(ours, ref_params)):
        assert_close(a, r, 1e-12, f"param {i}")


def test_cyclic_lr_on_rmsprop_float32_changes_steps():
    shapes = [(257,)]
    grads = GradStream(shapes, np.float32, seed=9)
    p0 = np.random.default_rng(1).standard_normal(shapes[0]).astype(np.float32)
    a, b = p0.copy(), p0.copy()
    opt_a = fastopt.RMSprop([a], lr=0.01)
    sched = fl.CyclicLR(opt_a, 0.001, 0.02, step_size_up=5)
    ref = reference.RMSprop([b], lr=0.01)
    for t in range(1, 31):
        ref.param_groups[0]["lr"] = opt_a.param_groups[0]["lr"]
        ref.param_groups[0]["momentum"] = opt_a.param_groups[0]["momentum"]
        opt_a.step(grads(t))
        ref.step(grads(t))
        sched.step()
    assert_close(a, b, 2e-5, "rmsprop param")
    assert a.dtype == np.float32
