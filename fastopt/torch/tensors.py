"""What fastopt.torch needs of tensors: checks, addresses, and views of the engine's state.

A parameter is stepped where torch keeps it: the engine gets its address, its element count
and its dtype (a complex parameter as its real view, as torch.optim computes it). State lives
in the engine's buffers and is shown to torch as tensors shaped and strided like their
parameter, each over exactly its own bytes (``torch.save`` of one writes that much only).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..engine import Slot

# torch dtype -> (the dtype the kernels step, elements per element of the parameter)
STEPPED = {
    torch.float32: (np.float32, 1), torch.float64: (np.float64, 1),
    torch.complex64: (np.float32, 2), torch.complex128: (np.float64, 2),
}
NUMPY = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}


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
    soon as the dimensions, by increasing stride, do not each step past all smaller ones."""
    extent = 0
    for size, stride in sorted(zip(t.shape, t.stride()), key=lambda d: d[1]):
        if size == 1:
            continue
        if stride <= extent:
            return True
        extent += (size - 1) * stride
    return False


def check_param(name: str, p: torch.Tensor) -> None:
    """Refuse what the kernels cannot step, saying why (nothing has changed yet)."""
    if p.device.type != "cpu":
        raise ValueError(f"{name}: expected a CPU tensor, got one on {p.device} "
                         "(fastopt steps CPU parameters)")
    if p.layout != torch.strided:
        raise ValueError(f"{name}: expected a strided (dense) tensor, got layout {p.layout}")
    if p.dtype not in STEPPED:
        raise TypeError(f"{name}: expected dtype float32, float64, complex64 or complex128, "
                        f"got {p.dtype}")
    if overlaps_itself(p):
        raise ValueError(f"{name}: expected a tensor whose elements do not share memory, got "
                         f"shape {tuple(p.shape)} with strides {p.stride()}")
    try:
        p.data_ptr()
    except (RuntimeError, NotImplementedError) as error:
        raise ValueError(f"{name}: expected a tensor over memory of its own, got a "
                         f"{type(p).__name__} ({error})") from None


class Watched:
    """A parameter as the optimizer steps it: the tensor the kernels step (``param`` itself
    when its elements are dense in memory, else a dense copy that the optimizer copies in and
    out around each step: a strided view, as torch.optim steps it through the view), and what
    the step checks against (its address, to notice replaced memory; the dtype, shape and
    strides its gradient must have)."""

    __slots__ = ("param", "stepped", "address", "dtype", "shape", "strides")

    def __init__(self, p: torch.Tensor) -> None:
        self.param = p
        self.stepped = p if is_dense(p) else torch.empty(p.shape, dtype=p.dtype)
        self.address = p.data_ptr()
        self.dtype, self.shape, self.strides = p.dtype, p.shape, self.stepped.stride()

    def slot(self) -> Slot:
        dtype, per_element = STEPPED[self.dtype]
        real = torch.view_as_real(self.stepped) if self.stepped.is_complex() else self.stepped
        return Slot(real.data_ptr(), real.numel(), dtype, None, tuple(real.shape),
                    None if real.is_contiguous() else real.stride())


def byte_range(p: torch.Tensor) -> tuple[int, int]:
    start = p.data_ptr()
    return start, start + p.numel() * p.element_size()


def same_layout(g: torch.Tensor, p: torch.Tensor) -> bool:
    """Whether ``g``'s elements sit in memory as ``p``'s do (so element i of one is element
    i of the other)."""
    return g.shape == p.shape and (g.stride() == p.stride() or p.numel() <= 1
                                   or (g.is_contiguous() and p.is_contiguous()))


def refuse_grad(name: str, g: torch.Tensor, p: torch.Tensor) -> None:
    if g.layout != torch.strided:
        raise RuntimeError(f"{name}: sparse gradients are not supported by this optimizer, "
                           f"got a {g.layout} .grad")
    if g.device.type != "cpu" or g.dtype != p.dtype:
        raise RuntimeError(f"{name}: expected a gradient of dtype {p.dtype} on the CPU, got "
                           f"{g.dtype} on {g.device}")
    raise RuntimeError(f"{name}: expected a gradient of shape {tuple(p.shape)}, got "
                       f"{tuple(g.shape)}")


def state_view(array: np.ndarray, p: torch.Tensor,
               strides: tuple[int, ...] | None = None) -> torch.Tensor:
    """``array`` (a parameter's 1-D slice of an engine buffer) as a tensor shaped, strided
    (unless ``strides`` says otherwise) and typed like ``p`` (the tensor stepped for the
    parameter), over exactly that slice's memory."""
    flat = torch.from_numpy(array)
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


def state_tensor(name: str, value: Any, p: torch.Tensor) -> torch.Tensor:
    """A loaded state array: a dense floating tensor of ``p``'s shape (cast as torch casts
    when it is copied in)."""
    try:
        t = value if isinstance(value, torch.Tensor) else torch.as_tensor(value)
    except (TypeError, ValueError, RuntimeError) as error:
        raise TypeError(f"{name}: expected a tensor, got {type(value).__name__} ({error})") from None
    if not (t.is_floating_point() or t.is_complex()) or t.layout != torch.strided:
        raise TypeError(f"{name}: expected a dense floating-point tensor, got {t.dtype} "
                        f"({t.layout})")
    if t.shape != p.shape:
        raise ValueError(f"{name}: expected shape {tuple(p.shape)} (its parameter's), got "
                         f"{tuple(t.shape)}")
    return t
