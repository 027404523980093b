"""Between the engine's state buffers and torch's state entries: the entries shown (views of the
buffers), whether an entry is still what was shown, and what a written or loaded entry puts
back (rounded, quantised or reordered as the storage needs)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .._kernels import kernels
from ..engine import Group
from ..rules import Rule
from ..rules.storage import COMPENSATION, Q8, scale_key
from . import tensors


def views_of(rule: Rule, group: Group, s: int, w: tensors.Watched) -> dict[str, torch.Tensor]:
    """Parameter ``s``'s state as torch shows it: views of the engine's buffers (a plain int
    step where the rule keeps one)."""
    if not group.has_state(s):
        return {}
    views: dict[str, torch.Tensor] = {}
    if group.counts_steps:
        views["step"] = (int(group.steps[s]) if rule.int_step
                         else tensors.scalar_view(group.steps, s))
    for name, values in group.scalars.items():
        views[name] = tensors.scalar_view(values, s)
    for role in group.roles:
        if role in group.live[s]:
            for key, array in group.views(s, role).items():  # 8-bit: codes and scales
                views[key] = w.state(array) if key == role else tensors.as_tensor(array)
    return views


def in_sync(rule: Rule, entry: Any, views: dict[str, torch.Tensor]) -> bool:
    """Whether ``entry`` holds exactly the engine's views (besides keys of its own)."""
    if not isinstance(entry, dict):
        return False
    known = {"step", COMPENSATION, *rule.role_names, *map(scale_key, rule.role_names),
             *(s.name for s in rule.scalars)}
    return (known & entry.keys()) == views.keys() and all(
        entry[k] is v for k, v in views.items())


def put(group: Group, s: int, stepped: torch.Tensor, arrays: dict[str, torch.Tensor]) -> None:
    """Copy a checked entry's tensors into parameter ``s``'s state: values rounded to
    nearest into low-precision state, or quantised into 8-bit state; 8-bit codes and
    their scales as they are."""
    for key, value in arrays.items():
        if key not in group.roles:  # an 8-bit role's scales
            role = next(r for r in group.roles if scale_key(r) == key)
            torch.from_numpy(group.scales(s, role)).copy_(value)
        elif group.dtype_of(s, key) == Q8 and value.dtype is not torch.uint8:
            values = np.empty(group.slots[s].size, np.float32)
            tensors.state_view(values, stepped).copy_(value)
            group.put(s, key, values)
        else:
            tensors.state_view(group.view(s, key), stepped).copy_(value)


def reorder(group: Group, s: int, new: tensors.Watched, old: tensors.Watched) -> None:
    """Parameter ``s``'s state put into the order of its elements' new memory (``new``), from
    the order of ``old``."""
    for role in group.live[s]:  # the state follows the elements into their new order
        if group.dtype_of(s, role) == Q8:  # blocks are of memory order: quantised anew
            values = np.empty(group.slots[s].size, np.float32)
            kernels.dequantize(group.view(s, role), group.scales(s, role), values,
                               group.signed(role))
            before = tensors.state_view(values, new.stepped, old.strides).clone()
            tensors.state_view(values, new.stepped).copy_(before)
            group.put(s, role, values)
            continue
        before = tensors.state_view(group.view(s, role), new.stepped, old.strides)
        tensors.state_view(group.view(s, role), new.stepped).copy_(before.clone())


def uncast(state: Any, given: dict[torch.Tensor, dict[Any, Any]]) -> None:
    """Put back, into ``state`` as torch's ``load_state_dict`` made it, the tensors ``given``
    where torch only cast them to their parameter's dtype."""
    for p, entry in dict(state).items():
        original = given.get(p)
        if original is None or not isinstance(entry, dict):
            continue
        for key, value in entry.items():
            before = original.get(key)
            if (key != "step" and isinstance(value, torch.Tensor)
                    and isinstance(before, torch.Tensor) and before.dtype != value.dtype
                    and before.shape == value.shape and before.device == value.device
                    and torch.equal(before.to(value.dtype), value)):
                entry[key] = before
