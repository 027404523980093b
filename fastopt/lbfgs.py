"""L-BFGS (torch.optim.LBFGS, torch 2.13) over one flat parameter vector, for both front ends.

:class:`Memory` is what an optimizer keeps between steps, under torch's state names;
:func:`lbfgs_step` runs one ``step(closure)`` on a :class:`FlatParams`, the parameters seen as
one vector: a preallocated flat gradient buffer the closure's gradients are gathered into,
updates written back into the parameters in place. The front ends (``fastopt.LBFGS`` for NumPy
arrays, ``fastopt.torch.LBFGS``) differ only in how a closure yields its loss and gradients.

A step builds its new memory aside and hands it back whole, so a closure that raises leaves
the previous memory as it was (the front ends put the parameters back).

Storage (fastopt.rules.storage): bfloat16 and float16 parameters are stepped in float32, the
dtype of the gradient buffer and of the whole memory; each ``x ← x + t·d`` is computed in
float32 from the stored values and stored rounded as ``rounding`` says. Stochastically, the
stream is keyed by (seed, iteration, parameter), so every trial point of one line search is
rounded with the same random bits and the accepted one, added again, is the point its gradient
was taken at. With Kahan's compensation (a flat vector ``kahan_comp`` of the parameters'
dtype) the compensation is part of the point: saved and restored with the parameters.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any, Callable, Sequence

import numpy as np

from ._kernels import kernels
from .clip import abs_max
from .line_search import strong_wolfe
from .rules.storage import COMPENSATION, LOW, Storage, name_of
from .rules.storage import dtype as storage_dtype
from .rules.storage import hypers as storage_hypers
from .stored import store, widened

LINE_SEARCHES = (None, "strong_wolfe")
STORAGE_HYPERS = storage_hypers()  # every rule's storage options, their defaults and checks
STORAGE_DEFAULTS = {h.name: h.default for h in STORAGE_HYPERS}
# y·s at or below this is not curvature worth remembering (torch's constant)
_MIN_CURVATURE = 1e-10


def compute_dtype(param: np.dtype) -> np.dtype:
    """The dtype a step computes in, and keeps its memory in, for parameters of ``param``."""
    return np.dtype(np.float64) if param == np.float64 else np.dtype(np.float32)


def group_storage(group: dict[str, Any], param: np.dtype) -> Storage:
    """The storage options of ``group`` (the defaults where it has none), checked for
    parameters of dtype ``param``."""
    stored = Storage(**{h.name: h.check(h.name, group.get(h.name, h.default))
                        for h in STORAGE_HYPERS})
    wide = compute_dtype(param)
    chosen = stored.state_dtype
    if chosen is not None and (isinstance(chosen, tuple) or storage_dtype(chosen) != wide):
        # its passes (the two-loop recursion's dot products and updates) read the memory's
        # vectors in the compute dtype: kept in 16 or 8 bits they would be widened in every
        # pass, each of them every iteration
        shown = dict(chosen) if isinstance(chosen, tuple) else chosen
        raise ValueError(f"state_dtype: L-BFGS keeps its memory (the direction, the curvature "
                         f"pairs, the last gradient) in the dtype it computes in, "
                         f"{name_of(wide)} for {param.name} parameters; got {shown!r}")
    stored.check((), [param])
    return stored


def _floating(a: np.ndarray) -> bool:
    """Whether ``a`` holds floating values (ml_dtypes' bfloat16 is no NumPy kind "f")."""
    return a.dtype.kind == "f" or a.dtype.name in LOW


def new_compensation(stored: Storage, param: np.dtype, n: int) -> np.ndarray | None:
    """Zeros for the flat Kahan compensation of n parameter elements, where they have one."""
    return np.zeros(n, param) if stored.rounding_of(param) == "kahan" else None


def loaded_compensation(entry: dict[str, Any], comp: np.ndarray | None,
                        as_array: Callable[[str, Any], np.ndarray]) -> np.ndarray | None:
    """The compensation a loaded state entry holds (zeros where it has none: a dict saved by
    torch.optim.LBFGS), checked against ``comp``, the optimizer's own (None: it keeps none)."""
    if COMPENSATION not in entry:
        return None if comp is None else np.zeros_like(comp)
    where = f"state_dict['state'][0][{COMPENSATION!r}]"
    if comp is None:
        raise ValueError(f"{where}: this optimizer keeps no compensation (it rounds its "
                         "parameters otherwise, or they are not bfloat16 or float16)")
    a = np.asarray(as_array(COMPENSATION, entry[COMPENSATION]))
    if a.shape != comp.shape or not _floating(a):
        raise ValueError(f"{where}: expected a float vector of the {comp.size} parameter "
                         f"elements, got {a.dtype} of shape {a.shape}")
    return a.astype(comp.dtype)


@dataclass
class Memory:
    """L-BFGS's state between steps (torch's names): counts, the last direction ``d`` and
    step ``t``, the curvature pairs (``old_dirs`` y, ``old_stps`` s, ``ro`` 1/y·s, oldest
    first), the initial inverse-Hessian scale, the last gradient and loss, and the two-loop
    coefficients ``al``. Arrays are never written after a step hands them over."""

    func_evals: int = 0
    n_iter: int = 0
    d: np.ndarray | None = None
    t: Any = None
    old_dirs: list[np.ndarray] = field(default_factory=list)
    old_stps: list[np.ndarray] = field(default_factory=list)
    ro: list[Any] = field(default_factory=list)
    H_diag: Any = None
    prev_flat_grad: np.ndarray | None = None
    prev_loss: float | None = None
    al: list[Any] | None = None
    started: bool = False  # whether the first step got past its first evaluation

    def entries(self) -> dict[str, Any]:
        """torch's state entry: only the keys torch would have written by now."""
        out: dict[str, Any] = {"func_evals": self.func_evals, "n_iter": self.n_iter}
        if self.started:
            out.update({f.name: getattr(self, f.name) for f in fields(self)
                        if f.name not in ("func_evals", "n_iter", "al", "started")})
        if self.al is not None:
            out["al"] = self.al
        return out


STATE_KEYS = ("func_evals", "n_iter", "d", "t", "old_dirs", "old_stps", "ro", "H_diag",
              "prev_flat_grad", "prev_loss", "al")


def memory_from_entries(entry: Any, n: int, dtype: np.dtype, as_array: Callable[[str, Any], np.ndarray],
                        as_scalar: Callable[[str, Any], Any], copy: bool = True) -> Memory:
    """A :class:`Memory` from a state entry in torch's layout, checked whole first.

    ``as_array`` turns a front end's vector (an ndarray, a tensor) into an ndarray and
    ``as_scalar`` its scalars into NumPy or Python scalars; both raise on what they refuse.
    ``copy=False`` keeps a vector that is already a contiguous one of ``dtype`` as it is
    (a step only reads its memory's vectors).
    """
    if not isinstance(entry, dict):
        raise TypeError(f"state_dict['state'][0]: expected a dict, got {type(entry).__name__}")
    unknown = set(entry) - set(STATE_KEYS)
    if unknown:
        raise ValueError(f"state_dict['state'][0]: unexpected keys {sorted(unknown)}; "
                         f"L-BFGS keeps {list(STATE_KEYS)}")
    counts = {}
    for key in ("func_evals", "n_iter"):
        value = entry.get(key, 0)
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise ValueError(f"state_dict['state'][0][{key!r}]: expected a count >= 0, got {value!r}")
        counts[key] = int(value)

    def vector(key: str, value: Any) -> np.ndarray:
        a = np.asarray(as_array(key, value))
        if a.shape != (n,):
            raise ValueError(f"state_dict['state'][0][{key!r}]: expected a vector of the "
                             f"{n} parameter elements, got shape {a.shape}")
        if not _floating(a):
            raise TypeError(f"state_dict['state'][0][{key!r}]: expected floating values, got {a.dtype}")
        return a.astype(dtype, copy=True) if copy else np.ascontiguousarray(a, dtype)

    memory = Memory(**counts)
    started = "d" in entry
    if started:
        for key in ("d", "prev_flat_grad"):
            if entry.get(key) is None:
                raise ValueError(f"state_dict['state'][0][{key!r}]: expected a vector, got None")
        pairs = []
        for key in ("old_dirs", "old_stps", "ro"):
            value = entry.get(key)
            if not isinstance(value, (list, tuple)):
                raise TypeError(f"state_dict['state'][0][{key!r}]: expected a list, got "
                                f"{type(value).__name__}")
            pairs.append(value)
        if not len(pairs[0]) == len(pairs[1]) == len(pairs[2]):
            raise ValueError("state_dict['state'][0]: old_dirs, old_stps and ro differ in length "
                             f"({len(pairs[0])}, {len(pairs[1])}, {len(pairs[2])})")
        memory = replace(
            memory, started=True, d=vector("d", entry["d"]),
            prev_flat_grad=vector("prev_flat_grad", entry["prev_flat_grad"]),
            old_dirs=[vector("old_dirs", v) for v in pairs[0]],
            old_stps=[vector("old_stps", v) for v in pairs[1]],
            ro=[as_scalar("ro", v) for v in pairs[2]],
            t=as_scalar("t", entry.get("t")), H_diag=as_scalar("H_diag", entry.get("H_diag")),
            prev_loss=None if entry.get("prev_loss") is None else float(entry["prev_loss"]))
    if "al" in entry:
        al = entry["al"]
        if not isinstance(al, (list, tuple)):
            raise TypeError(f"state_dict['state'][0]['al']: expected a list, got {type(al).__name__}")
        memory.al = [None if v is None else as_scalar("al", v) for v in al]
    return memory


Point = tuple[np.ndarray, "np.ndarray | None"]  # a saved point: values, compensation


class FlatParams:
    """Parameters seen as one flat vector: ``grad`` (the gathered gradient, refilled by
    ``evaluate``, of the compute ``dtype``), in-place ``add(t, d)``, and ``save``/``restore``
    of the point. 16-bit parameters are stored as ``rounding`` says (see the module): ``comp``
    is their flat Kahan compensation, ``stream`` the stochastic rounding stream's step."""

    def __init__(self, arrays: Sequence[np.ndarray], dtype: np.dtype,
                 evaluate: Callable[[np.ndarray], float], rounding: str = "nearest",
                 seed: int = 0, comp: np.ndarray | None = None) -> None:
        self.arrays = list(arrays)
        self.sizes = [a.size for a in self.arrays]
        self.offsets = np.cumsum([0, *self.sizes]).tolist()
        self.n = self.offsets[-1]
        self.grad = np.empty(self.n, dtype)
        self._evaluate = evaluate
        self.rounding, self.seed, self.comp = rounding, seed, comp
        self.stream = 0

    def pieces(self, flat: np.ndarray) -> list[np.ndarray]:
        """``flat`` cut into views of the parameters' shapes."""
        return [flat[lo:hi].reshape(a.shape)
                for a, lo, hi in zip(self.arrays, self.offsets, self.offsets[1:])]

    def evaluate(self) -> float:
        """The loss at the current point; its gradient lands in ``grad``."""
        return self._evaluate(self.grad)

    def add(self, t: Any, d: np.ndarray) -> None:
        """x ← x + t·d, t and each product rounded in the compute dtype (as torch's ``add_``
        with ``alpha``), one pass per parameter; a 16-bit parameter's result stored rounded."""
        comps = self.pieces(self.comp) if self.comp is not None else [None] * len(self.arrays)
        for i, (a, piece, comp) in enumerate(zip(self.arrays, self.pieces(d), comps)):
            if a.dtype.itemsize == 2:
                contiguous = np.ascontiguousarray(a)
                wide = widened(contiguous)
                kernels.axpy_dot(wide.reshape(-1), t, piece.reshape(-1))
                key = kernels.stream_key(self.seed, self.stream, i)
                store(wide, contiguous, self.rounding, key, comp)
                if contiguous is not a:
                    a[...] = contiguous
            elif a.flags.c_contiguous:
                kernels.axpy_dot(a, t, piece)
            else:  # a tensor's strided view (fastopt.torch): the same rounding, in NumPy
                a += piece * a.dtype.type(t)

    def new_point(self) -> Point:
        """Room for a saved point."""
        return (np.empty(self.n, self.grad.dtype),
                None if self.comp is None else np.empty_like(self.comp))

    def save(self, into: Point) -> None:
        for a, piece in zip(self.arrays, self.pieces(into[0])):
            piece[...] = a  # 16-bit values are exact in the compute dtype
        if self.comp is not None:
            into[1][...] = self.comp

    def restore(self, point: Point) -> None:
        for a, piece in zip(self.arrays, self.pieces(point[0])):
            a[...] = piece
        if self.comp is not None:
            self.comp[...] = point[1]


def step_or_restore(flat: FlatParams, memory: Memory, **hypers: Any) -> tuple[Any, Memory]:
    """:func:`lbfgs_step`, and if it raises (a closure that raises, a bad gradient) the
    parameters put back at the point it started from before the error goes on: ``memory`` is
    never modified, so with the point restored the caller has nothing left to undo."""
    start = flat.new_point()
    flat.save(start)
    try:
        return lbfgs_step(flat, memory, **hypers)
    except BaseException:
        flat.restore(start)
        raise


def _direction(memory: Memory, g: np.ndarray) -> np.ndarray:
    """The two-loop recursion: -H g for L-BFGS's inverse-Hessian estimate H. Each round is one
    pass (:func:`~fastopt._kernels.kernels.axpy_dot`): its update, and the dot product the next
    round needs, taken in double and rounded to g's dtype as torch's dot product is."""
    al, ro = memory.al, memory.ro
    assert al is not None
    s, y = memory.old_stps, memory.old_dirs
    k, rounded = len(s), g.dtype.type
    q = np.negative(g)
    dot = kernels.axpy_dot(q, 0.0, None, s[-1]) if k else 0.0
    for i in range(k - 1, -1, -1):
        al[i] = rounded(dot) * ro[i]
        dot = kernels.axpy_dot(q, -al[i], y[i], s[i - 1] if i else None)
    r = np.multiply(q, memory.H_diag, out=q)
    dot = kernels.axpy_dot(r, 0.0, None, y[0]) if k else 0.0
    for i in range(k):
        be_i = rounded(dot) * ro[i]
        dot = kernels.axpy_dot(r, al[i] - be_i, s[i], y[i + 1] if i + 1 < k else None)
    return r


def lbfgs_step(flat: FlatParams, memory: Memory, *, lr: float, max_iter: int, max_eval: int,
               tolerance_grad: float, tolerance_change: float, history_size: int,
               line_search_fn: str | None) -> tuple[Any, Memory]:
    """One ``step(closure)``: up to ``max_iter`` L-BFGS iterations (``max_eval`` evaluations)
    from the parameters' current point. Returns the first evaluation's loss and the new memory
    (``memory`` itself is left as it was)."""
    m = replace(memory, old_dirs=list(memory.old_dirs), old_stps=list(memory.old_stps),
                ro=list(memory.ro), al=None if memory.al is None else list(memory.al))
    first_loss = loss = flat.evaluate()
    evals = 1
    m.func_evals += 1
    g = flat.grad
    done = bool(abs_max(g) <= tolerance_grad)
    if done:
        return first_loss, m
    m.started = True
    x = flat.new_point() if line_search_fn is not None else None
    for it in range(1, max_iter + 1):
        m.n_iter += 1
        flat.stream = m.n_iter
        if m.n_iter == 1:
            m.d = np.negative(g)
            m.old_dirs, m.old_stps, m.ro, m.H_diag = [], [], [], 1
        else:
            y = np.subtract(g, m.prev_flat_grad)
            s = np.multiply(m.d, m.t)
            ys = np.dot(y, s)
            if ys > _MIN_CURVATURE:
                if len(m.old_dirs) == history_size:
                    del m.old_dirs[0], m.old_stps[0], m.ro[0]
                m.old_dirs.append(y)
                m.old_stps.append(s)
                m.ro.append(1.0 / ys)
                m.H_diag = ys / np.dot(y, y)
            if m.al is None:
                m.al = [None] * history_size
            m.d = _direction(m, g)
        m.prev_flat_grad = g.copy()
        m.prev_loss = loss
        # the first step of a run is scaled to the gradient's size, the later ones by lr
        m.t = min(1.0, 1.0 / np.sum(np.abs(g))) * lr if m.n_iter == 1 else lr
        gtd = np.dot(g, m.d)
        if gtd > -tolerance_change:
            break
        used = 0
        if line_search_fn is not None:
            assert x is not None
            flat.save(x)

            def along(t: Any, d: np.ndarray = m.d) -> tuple[float, np.ndarray]:
                flat.add(t, d)
                try:
                    return flat.evaluate(), flat.grad.copy()
                finally:
                    flat.restore(x)

            loss, g, m.t, used = strong_wolfe(along, m.t, m.d, loss, g, gtd,
                                              max_ls=max_eval - evals)
            flat.add(m.t, m.d)
            done = bool(abs_max(g) <= tolerance_grad)
        else:
            flat.add(m.t, m.d)
            if it != max_iter:  # the last iteration's point is evaluated by the next step
                loss = flat.evaluate()
                g = flat.grad
                done = bool(abs_max(g) <= tolerance_grad)
                used = 1
        evals += used
        m.func_evals += used
        if it == max_iter or evals >= max_eval or done:
            break
        if abs_max(m.d) * abs(m.t) <= tolerance_change:  # max |d·t|: rounding is monotonic
            break
        if abs(loss - m.prev_loss) < tolerance_change:
            break
    return first_loss, m
