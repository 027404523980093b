"""What fastopt.torch needs of tensors: checks, addresses, and views of the engine's state.

A parameter is stepped where torch keeps it: the engine gets its address, its element count
and its dtype (a complex parameter as its real view, as torch.optim computes it). State lives
in the engine's buffers and is shown to torch as tensors shaped and strided like their
parameter, each over exactly its own bytes (``torch.save`` of one writes that much only).
A DTensor parameter is stepped through its local shard (:mod:`.dtensor`), its state shown as
DTensors like it.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from ..engine import Slot
from ..rules import storage
from . import dtensor
from ..rows import Rows

# torch dtype -> (the storage type the kernels step, elements per element of the parameter)
STEPPED = {
    torch.float32: ("float32", 1), torch.float64: ("float64", 1),
    torch.bfloat16: ("bfloat16", 1), torch.float16: ("float16", 1),
    torch.complex64: ("float32", 2), torch.complex128: ("float64", 2),
}
LOW = (torch.bfloat16, torch.float16)  # gradients of these may step float32 parameters
# NumPy dtypes as torch reads them (bfloat16, which NumPy lacks, through its bits)
NUMPY = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64,
         np.dtype(np.float16): torch.float16, np.dtype(np.uint8): torch.uint8}


def storage_dtype(p: torch.Tensor) -> np.dtype:
    """The NumPy dtype the engine keeps ``p``'s elements as (bfloat16: ml_dtypes')."""
    return storage.dtype(STEPPED[p.dtype][0])


def as_tensor(array: np.ndarray) -> torch.Tensor:
    """A NumPy array as a tensor over its memory; bfloat16 (ml_dtypes') through its bits. An
    empty one gets memory of its own: ``torch.save`` refuses two tensors of different dtypes
    at one address, as an empty slice's may be another role's or another parameter's."""
    if array.size == 0:
        return torch.empty(array.shape, dtype=torch_dtypes((array.dtype,))[0])
    if array.dtype.name == "bfloat16":
        return torch.from_numpy(array.view(np.uint16)).view(torch.bfloat16)
    return torch.from_numpy(array)


def torch_dtypes(dtypes: tuple[np.dtype, ...]) -> tuple[torch.dtype, ...]:
    return tuple(torch.bfloat16 if d.name == "bfloat16" else NUMPY[d] for d in dtypes)


def is_dense(t: torch.Tensor) -> bool:
    """Whether ``t``'s elements fill ``numel`` consecutive slots, in any dimension order
    (contiguous, channels_last, ...)."""
    expected = 1
    for size, stride in sorted(zip(t.shape, t.stride()), key=lambda d: d[1]):
        if size != 1 and stride != expected:
            return False
        expected *= size
    return True


def overlaps_itself(t: torch.Tensor) -> bool:
    """Whether two elements of ``t`` may share memory (an expanded tensor, say): taken as
    soon as the dimensions, by increasing stride, do not each step past all smaller ones. A
    tensor of no elements has none to share (torch gives some of them stride 0)."""
    if t.numel() == 0:
        return False
    extent = 0
    for size, stride in sorted(zip(t.shape, t.stride()), key=lambda d: d[1]):
        if size == 1:
            continue
        if stride <= extent:
            return True
        extent += (size - 1) * stride
    return False


WIDE = (torch.float32, torch.float64)  # what L-BFGS, outside the engine, steps
REAL = WIDE + LOW  # what Adafactor, outside the engine, steps


def check_dense(name: str, p: torch.Tensor, dtypes: tuple[torch.dtype, ...] = WIDE) -> None:
    """Refuse a parameter that a rule outside the engine (Adafactor, L-BFGS) cannot step: it
    takes dense CPU tensors of ``dtypes`` only."""
    if p.device.type != "cpu" or p.is_sparse or p.dtype not in dtypes:
        names = [str(d).removeprefix("torch.") for d in dtypes]
        raise TypeError(f"{name}: expected a dense CPU {', '.join(names[:-1])} or {names[-1]} "
                        f"tensor, got {p.dtype} on {p.device}")


def check_param(name: str, p: torch.Tensor) -> None:
    """Refuse what the kernels cannot step, saying why (nothing has changed yet). A DTensor's
    local shard is what they step."""
    if dtensor.is_dtensor(p):
        dtensor.check_param(name, p)
        name, p = f"{name} (its local shard)", dtensor.local(p)
    if p.device.type != "cpu":
        raise ValueError(f"{name}: expected a CPU tensor, got one on {p.device} "
                         "(fastopt steps CPU parameters)")
    if p.layout != torch.strided:
        raise ValueError(f"{name}: expected a strided (dense) tensor, got layout {p.layout}")
    if p.dtype not in STEPPED:
        raise TypeError(f"{name}: expected dtype float32, float64, bfloat16, float16, complex64 "
                        f"or complex128, got {p.dtype}")
    try:
        storage_dtype(p)
    except ImportError as error:  # bfloat16 is kept as ml_dtypes' (an optional dependency)
        raise ImportError(f"{name}: a {p.dtype} parameter needs the ml_dtypes package "
                          "(pip install ml_dtypes)") from error
    if overlaps_itself(p):
        raise ValueError(f"{name}: expected a tensor whose elements do not share memory, got "
                         f"shape {tuple(p.shape)} with strides {p.stride()}")
    try:
        p.data_ptr()
    except (RuntimeError, NotImplementedError) as error:
        raise ValueError(f"{name}: expected a tensor over memory of its own, got a "
                         f"{type(p).__name__} ({error})") from None


class Watched:
    """A parameter as the optimizer steps it: the tensor holding its elements here (``shard``:
    ``param`` itself, or a DTensor's local shard), the tensor the kernels step (``shard``
    itself when its elements are dense in memory, else a dense copy that the optimizer copies
    in and out around each step: a strided view, as torch.optim steps it through the view),
    and what the step checks against (the shard's address, to notice replaced memory; the
    dtype, shape and strides its gradient's shard must have)."""

    __slots__ = ("param", "shard", "distributed", "stepped", "address", "dtype", "shape",
                 "strides")

    def __init__(self, p: torch.Tensor, row_major: bool = False) -> None:
        """``row_major``: the kernel needs the elements in C order (a rule whose ``row_major``
        is True), so a parameter dense in another order is stepped through a copy too."""
        self.param = p
        self.shard = shard = dtensor.local(p)
        self.distributed = shard is not p
        in_order = shard.is_contiguous() if row_major else is_dense(shard)
        self.stepped = shard if in_order else torch.empty(shard.shape, dtype=shard.dtype)
        self.address = shard.data_ptr()
        self.dtype, self.shape, self.strides = shard.dtype, shard.shape, self.stepped.stride()

    def slot(self) -> Slot:
        real = torch.view_as_real(self.stepped) if self.stepped.is_complex() else self.stepped
        return Slot(real.data_ptr(), real.numel(), storage_dtype(self.stepped), None,
                    tuple(real.shape), None if real.is_contiguous() else real.stride())

    def state(self, array: np.ndarray) -> torch.Tensor:
        """``array`` (the parameter's slice of a state buffer) as torch shows its state: shaped
        and strided as the stepped tensor, a DTensor like the parameter where it is one."""
        view = state_view(array, self.stepped)
        return dtensor.state_like(self.param, view) if self.distributed else view


def byte_range(p: torch.Tensor) -> tuple[int, int]:
    """The bytes holding ``p``'s elements here (a DTensor's: its local shard's)."""
    p = dtensor.local(p)
    start = p.data_ptr()
    return start, start + p.numel() * p.element_size()


def same_layout(g: torch.Tensor, p: torch.Tensor) -> bool:
    """Whether ``g``'s elements sit in memory as ``p``'s do (so element i of one is element
    i of the other)."""
    return g.shape == p.shape and (g.stride() == p.stride() or p.numel() <= 1
                                   or (g.is_contiguous() and p.is_contiguous()))


def grad_accepted(g: torch.Tensor, p: torch.Tensor) -> bool:
    """Whether the kernels read ``g`` as ``p``'s gradient as it is: of ``p``'s dtype, or
    bfloat16 or float16 for a float32 ``p`` (``p.grad_dtype`` set), promoted as read."""
    return g.dtype is p.dtype or (p.dtype is torch.float32 and g.dtype in LOW)


def sparse_rows(name: str, g: torch.Tensor, p: torch.Tensor) -> Rows:
    """A sparse COO gradient of ``p`` as the rows it touches (:mod:`fastopt.rows`), coalesced
    as torch.optim.SparseAdam coalesces it: a row is an element of the gradient's sparse
    dimensions (its first ones), laid out over the dense ones."""
    if g.layout is not torch.sparse_coo:
        raise RuntimeError(f"{name}: SparseAdam does not support dense gradients, please "
                           "consider Adam instead")
    if g.device.type != "cpu" or g.dtype != p.dtype or g.shape != p.shape:
        raise RuntimeError(f"{name}: expected a sparse gradient of dtype {p.dtype} and shape "
                           f"{tuple(p.shape)} on the CPU, got {g.dtype}, {tuple(g.shape)} on "
                           f"{g.device}")
    g = g.coalesce()
    sparse = g.sparse_dim()
    indices, values = g._indices(), g._values()
    rows = torch.zeros(indices.shape[1], dtype=torch.int64)
    for d in range(sparse):  # the row number over the sparse dimensions, in C order
        rows = rows * p.shape[d] + indices[d]
    values = values.contiguous().view(-1)
    return Rows(rows.contiguous().numpy(), values.numpy(), math.prod(p.shape[sparse:]))


def refuse_grad(name: str, g: torch.Tensor, p: torch.Tensor) -> None:
    if g.layout != torch.strided:
        raise RuntimeError(f"{name}: sparse gradients are not supported by this optimizer, "
                           f"got a {g.layout} .grad")
    if g.device.type != "cpu" or not grad_accepted(g, p):
        raise RuntimeError(f"{name}: expected a gradient of dtype {p.dtype}"
                           + (" (or bfloat16 or float16)" if p.dtype is torch.float32 else "")
                           + f" on the CPU, got {g.dtype} on {g.device}")
    raise RuntimeError(f"{name}: expected a gradient of shape {tuple(p.shape)}, got "
                       f"{tuple(g.shape)}")


def state_view(array: np.ndarray, p: torch.Tensor,
               strides: tuple[int, ...] | None = None) -> torch.Tensor:
    """``array`` (a parameter's 1-D slice of an engine buffer) as a tensor shaped, strided
    (unless ``strides`` says otherwise) and typed like ``p`` (the tensor stepped for the
    parameter), over exactly that slice's memory."""
    flat = as_tensor(array)
    if p.is_complex():
        flat = torch.view_as_complex(flat.view(-1, 2))
    return flat.as_strided(p.shape, p.stride() if strides is None else strides)


def scalar_view(values: np.ndarray, s: int) -> torch.Tensor:
    """Element ``s`` of ``values`` as a 0-d tensor sharing its memory (a live ``step``)."""
    return torch.from_numpy(values[s:s + 1]).reshape(())


def number(name: str, value: Any) -> Any:
    """A 0-d (or one-element) tensor's value; anything else as it is."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise TypeError(f"{name}: expected a number, got a tensor of shape {tuple(value.shape)}")
        return value.item()
    return value


def state_tensor(name: str, value: Any, p: torch.Tensor, dtypes: tuple[torch.dtype, ...],
                 shape: tuple[int, ...] | None) -> torch.Tensor:
    """A loaded state array: a dense tensor of ``shape`` (None: ``p``'s); of one of ``dtypes``
    where that says what it holds (8-bit codes, block scales), else of any floating dtype
    (cast as torch casts when it is copied in); for a DTensor parameter, the local shard of a
    DTensor like it."""
    if dtensor.is_dtensor(p):
        if shape is None:
            value = dtensor.local_state(name, value, p)
        p = dtensor.local(p)
    try:
        t = value if isinstance(value, torch.Tensor) else torch.as_tensor(value)
    except (TypeError, ValueError, RuntimeError) as error:
        raise TypeError(f"{name}: expected a tensor, got {type(value).__name__} ({error})") from None
    if not dtypes:
        raise ValueError(f"{name}: this optimizer keeps no such state (8-bit block scales "
                         "go with state kept in 8 bits)")
    if shape is not None:  # an 8-bit role's block scales
        ok, expected = t.dtype is torch.float32, "float32"
    elif torch.uint8 in dtypes:  # an 8-bit role: its codes, or values to quantise
        ok, expected = t.dtype is torch.uint8 or t.is_floating_point(), "uint8 or floating-point"
    else:
        ok, expected = t.is_floating_point() or t.is_complex(), "floating-point"
    if not ok or t.layout != torch.strided:
        raise TypeError(f"{name}: expected a dense {expected} tensor, got {t.dtype} ({t.layout})")
    expected = tuple(p.shape) if shape is None else shape
    if tuple(t.shape) != expected:
        raise ValueError(f"{name}: expected shape {expected}"
                         + (" (its parameter's)" if shape is None else " (one per block)")
                         + f", got {tuple(t.shape)}")
    return t
