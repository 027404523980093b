"""The engine under every front end: layouts, segment tables over any range, the reduction
pass, per-parameter step status, growing layouts, and the checks of saved state entries.

Proves that a segment table may cover any run of elements of any buffer (a slice, as one rank
of a sharded buffer owns, or many tensors at once) and that a kernel then changes exactly that
memory, as the reference does to the same elements; that the driver's reduction pass gives the
same bits whatever the thread count; that parameters stepped on different schedules keep their
own step counts and state, as separate optimizers would; that a layout grown over a newcomer
keeps every member's state bit for bit; and that ``check_entry`` refuses what a saved entry
must not hold, naming it.
"""

from __future__ import annotations

import numpy as np
import pytest

import fastopt
from fastopt import reference
from fastopt._kernels import kernels
from fastopt.engine import EMPTY, Engine, Slot, check_entry
from fastopt.flat import ALIGNMENT, aligned_offsets
from fastopt.rules import RULES

from conftest import assert_arrays_equal

ADAM = RULES["Adam"]
ADAM_ARGS = ADAM.args(ADAM.check_group(ADAM.defaults()), 1, {}, frozenset())


def _adam_table(addresses, lengths, dtype, m, v):
    table = kernels.SegmentTable(addresses, lengths, kernels.DTYPE_CODES[np.dtype(dtype).name])
    table.set_state(0, [m + a - addresses[0] for a in addresses])
    table.set_state(1, [v + a - addresses[0] for a in addresses])
    return table


# ----------------------------------------------------------------------------- layouts
def test_aligned_offsets():
    offsets, total = aligned_offsets([3, 0, 64, 65, 1])
    assert offsets == [0, 64, 64, 128, 256]
    assert total == 257
    assert all(o % ALIGNMENT == 0 for o in offsets)


def test_state_buffers_are_aligned_and_laid_out_over_the_group():
    params = [np.ones(n, np.float32) for n in (3, 100, 1, 4097)]
    opt = fastopt.Adam(params)
    opt.step([np.ones_like(p) for p in params])
    (group,) = opt._engine.groups
    for role, buffer in group.buffers.items():
        assert buffer.ctypes.data % ALIGNMENT == 0, role
        for s, p in enumerate(params):
            view = group.view(s, role)
            assert view.ctypes.data % ALIGNMENT == 0 and view.size == p.size
    assert opt._engine.nbytes() == sum(b.nbytes for b in group.buffers.values())


# ----------------------------------------------------------------------------- ranges
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_table_over_a_range_changes_that_range_only(dtype):
    """A shard of a flat buffer, [start, stop), stepped as a rank of a sharded optimizer would:
    the elements outside it are untouched, those inside equal the reference on that slice."""
    rng = np.random.default_rng(0)
    n, start, stop = 100_000, 12_352, 71_104  # element offsets on cache lines
    flat, grad = rng.standard_normal(n).astype(dtype), rng.standard_normal(n).astype(dtype)
    m, v = np.zeros(stop - start, dtype), np.zeros(stop - start, dtype)
    before = flat.copy()
    item = flat.itemsize
    table = _adam_table([flat.ctypes.data + start * item], [stop - start], dtype,
                        m.ctypes.data, v.ctypes.data)
    table.bind_grad_addresses([grad.ctypes.data + start * item])
    h = ADAM.check_group(ADAM.defaults())
    kernels.run(table, kernels.KERNELS.index("adam"), ADAM.args(h, 1, {}, frozenset()), 0b011)
    assert_arrays_equal([flat[:start], flat[stop:]], [before[:start], before[stop:]], "outside")
    expected, state = before[start:stop].copy(), {}
    reference.adam(expected, grad[start:stop], state, step=1, lr=1e-3, betas=(0.9, 0.999),
                   eps=1e-8, weight_decay=0.0, amsgrad=False, maximize=False,
                   decoupled_weight_decay=False)
    assert not np.array_equal(expected, before[start:stop])
    assert_arrays_equal([flat[start:stop], m, v],
                        [expected, state["exp_avg"], state["exp_avg_sq"]], "inside")


def test_many_segments_step_as_one():
    """Segments of every length around the piece size, in one table, give the bits of one
    segment over the same elements (the update is element-wise)."""
    rng = np.random.default_rng(1)
    lengths = [1, 4095, 4096, 4097, 0, 8191, 17, 40_000]
    total = sum(lengths)
    p = rng.standard_normal(total).astype(np.float32)
    g = rng.standard_normal(total).astype(np.float32)
    one, many = p.copy(), p.copy()
    for target, split in ((one, [total]), (many, lengths)):
        m, v = np.zeros(total, np.float32), np.zeros(total, np.float32)
        offsets = np.cumsum([0, *split[:-1]]) * 4
        table = kernels.SegmentTable([target.ctypes.data + o for o in offsets], split,
                                     kernels.DTYPE_CODES["float32"])
        table.set_state(0, [m.ctypes.data + o for o in offsets])
        table.set_state(1, [v.ctypes.data + o for o in offsets])
        table.bind_grad_addresses([g.ctypes.data + o for o in offsets])
        kernels.run(table, kernels.KERNELS.index("adam"), ADAM_ARGS, 0b011)
    assert_arrays_equal([many], [one], "params")
    assert not np.array_equal(one, p)


def test_kernel_calls_are_checked():
    p = np.ones(10, np.float32)
    table = kernels.SegmentTable.of_arrays([p])
    with pytest.raises(RuntimeError, match="bound"):
        kernels.run(table, kernels.KERNELS.index("sgd"), dict(lr=0.1, momentum=0.0,
                    dampening=0.0, weight_decay=0.0, grad_scale=1.0, nesterov=False,
                    first=False), 0)
    table.bind_grad_addresses([np.ones(10, np.float32).ctypes.data])
    with pytest.raises(ValueError, match="bias2_sqrt"):  # a field of the struct left out
        kernels.run(table, kernels.KERNELS.index("adam"), {"step_size": 0.1}, 0b011)
    table.bind_grad_addresses([np.ones(10, np.float32).ctypes.data])
    with pytest.raises(RuntimeError, match="state role 0"):
        kernels.run(table, kernels.KERNELS.index("adam"), ADAM_ARGS, 0b011)
    with pytest.raises(ValueError, match="gradient addresses"):
        table.bind_grad_addresses([])
    assert np.array_equal(p, np.ones(10, np.float32))


# ----------------------------------------------------------------------------- reduction
@pytest.mark.parametrize("kind", [0, 1, 2])
def test_the_reduction_pass_is_the_same_for_any_thread_count(kind, restore_threads):
    rng = np.random.default_rng(2)
    arrays = [rng.standard_normal(n).astype(np.float32) for n in (70_001, 3, 100_000)]
    table = kernels.SegmentTable.of_arrays(arrays)
    results = set()
    for threads in (1, 2):
        fastopt.set_num_threads(threads)
        kernels.set_adaptive(False)
        try:
            results.add(kernels.accumulate_norm(table, kind, False, 0.0))
        finally:
            kernels.set_adaptive(True)
    assert len(results) == 1
    flat = np.concatenate(arrays).astype(np.float64)
    expected = {0: np.sum(flat**2), 1: np.sum(np.abs(flat)), 2: np.max(np.abs(flat))}[kind]
    assert results.pop() == pytest.approx(expected, rel=1e-12)
    per_segment = table.segment_values(1)  # the pass leaves one value per segment
    assert len(per_segment) == 3


# ----------------------------------------------------------------------------- status
def test_parameters_stepped_on_their_own_schedule_keep_their_own_status():
    """Two slots of one group, the second stepped every other time: each equals a reference
    optimizer stepped as often, and the steps sharing a status run as one kernel call."""
    rng = np.random.default_rng(3)
    params = [rng.standard_normal(n) for n in (5000, 300)]
    refs = [reference.Adam([p.copy()], lr=0.01) for p in params]
    engine = Engine(ADAM)
    h = ADAM.check_group(ADAM.defaults(lr=0.01))
    group = engine.add_group([Slot.of(p) for p in params], h)
    for k in range(6):
        grads = [rng.standard_normal(p.shape) for p in params]
        active = [[True, k % 2 == 0]]

        def bind(g, run, table, slots):
            table.bind_grad_addresses([grads[s].ctypes.data for s in slots])

        engine.step(engine.check([{"params": params, **ADAM.defaults(lr=0.01)}]), bind, active)
        for s, on in enumerate(active[0]):
            if on:
                refs[s].step([grads[s]])
    assert [int(t) for t in group.steps] == [6, 3]
    for p, ref in zip(params, refs):
        assert_arrays_equal([p], ref.param_groups[0]["params"], "params")
    assert not group.runs[0].uniform


def test_a_layout_grown_over_a_newcomer_keeps_every_members_state():
    params = [np.ones(1000), np.ones(10), np.ones(77)]
    engine = Engine(ADAM)
    h = ADAM.check_group(ADAM.defaults())
    group = engine.add_group([Slot.of(p) for p in params], h, members=[0, 2])
    grads = [np.full(p.shape, 0.5) for p in params]

    def bind(g, run, table, slots):
        table.bind_grad_addresses([grads[s].ctypes.data for s in slots])

    checked = engine.check([{"params": params, **ADAM.defaults()}])
    engine.step(checked, bind, [[True, False, True]])
    assert group.members == [0, 2] and 1 not in group.placed
    before = {s: {r: group.view(s, r).copy() for r in group.live[s]} for s in (0, 2)}
    version = group.version
    engine.step(checked, bind, [[False, True, False]])  # its first gradient: laid out anew
    assert group.members == [0, 1, 2] and group.version > version
    for s, roles in before.items():
        for role, value in roles.items():
            assert_arrays_equal([group.view(s, role)], [value], f"slot {s} {role}")
    assert [int(t) for t in group.steps] == [1, 1, 1]


# ----------------------------------------------------------------------------- entries
def _check(entry, rule=ADAM, strict=True, **hypers):
    h = rule.check_group(rule.defaults(**hypers))
    return check_entry(rule, "entry", entry, h, lambda name, v: v,
                       lambda name, role, v: np.asarray(v), strict=strict)


def test_check_entry():
    full = {"step": 3, "exp_avg": np.zeros(2), "exp_avg_sq": np.zeros(2)}
    loaded = _check(full)
    assert loaded.step == 3 and set(loaded.arrays) == {"exp_avg", "exp_avg_sq"}
    assert _check({}) is EMPTY
    assert _check({"note": 1}, strict=False) is EMPTY  # a tool's own entry, in torch
    assert _check({**full, "note": 1}, strict=False).step == 3
    with pytest.raises(ValueError, match="unknown"):
        _check({**full, "note": 1})
    with pytest.raises(ValueError, match="'step' is missing"):
        _check({"exp_avg": np.zeros(2), "exp_avg_sq": np.zeros(2)})
    with pytest.raises(ValueError, match="exp_avg_sq"):
        _check({"step": 3, "exp_avg": np.zeros(2)})
    with pytest.raises(ValueError, match="max_exp_avg_sq"):
        _check(full, amsgrad=True)
    with pytest.raises(ValueError, match="whole number"):
        _check({**full, "step": 2.5})
    with pytest.raises(TypeError, match="dict"):
        _check([1, 2])
    nadam = RULES["NAdam"]
    with pytest.raises(ValueError, match="mu_product"):
        _check(full, rule=nadam)
    assert _check({**full, "mu_product": 0.5}, rule=nadam).scalars == {"mu_product": 0.5}
    sgd = RULES["SGD"]
    assert _check({"momentum_buffer": np.zeros(2)}, rule=sgd, momentum=0.9).step == 0
    assert _check({}, rule=sgd, momentum=0.9) is EMPTY  # the buffer starts as the gradient
