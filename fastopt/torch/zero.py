"""ZeRO-1: a fastopt.torch optimizer whose state is sharded over the ranks of a process group.

Each rank trains the whole model on its own batch (no DDP around it) and keeps the optimizer
state of one slice of the parameters::

    from fastopt.torch.distributed import ZeroOptimizer
    opt = ZeroOptimizer(model.parameters(), fastopt.torch.AdamW, lr=1e-3)
    for x, y in batches:                  # each rank its own batch
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()                        # averages the gradients, steps a slice, shares it

The parameters of each dtype are laid end to end in one flat index space, each from a
64-byte boundary, and cut into one chunk per rank, each a whole number of cache lines
(:mod:`.flat_shards`). A step is, per dtype: the gradients copied into one flat buffer of that
layout; one reduce-scatter of it (the average over the ranks; on gloo an all-reduce, see
:class:`~fastopt.torch.flat_shards.Shard`), after which each rank holds its chunk of the
averaged gradient; one step of the rank's optimizer (``optimizer_class``: one kernel call per
group) over its chunk, which it steps in the parameters' own memory (pieces: 1-D views of the
parameters over the chunk); one all-gather of the chunks, copied into the other ranks' pieces
of the parameters. State memory per rank is its chunk's: 1/world of the whole. Every rule is
element-wise, so a step is bitwise the unsharded one given the same averaged gradients.

Where torch.optim would skip a parameter without a gradient, the ranks agree first: each
chunk of the gradient buffer ends with one slot per parameter it touches, 1 where the rank
has that parameter's gradient, so the same reduce-scatter tells each rank which of its pieces
have a gradient anywhere (a parameter with a gradient on some ranks only is averaged with
zeros elsewhere, as under DDP). ``state_dict()`` consolidates (a collective: every rank gets
torch's layout for every parameter); ``load_state_dict()`` takes such a dict, or torch.optim's,
on every rank, and each rank keeps its slices of it (any world size).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch
import torch.distributed as dist

from .. import validation
from ..rules.storage import COMPENSATION
from . import dtensor, sharded, tensors
from .flat_shards import Piece, Shard, flat_view, in_memory_order_of
from .optimizer import Optimizer


class ZeroOptimizer(torch.optim.Optimizer):
    """``optimizer_class`` (a fastopt.torch optimizer) over ``params``, its state sharded over
    the ranks of ``process_group`` (default: the world), each rank training on its own batch.

    ``param_groups`` are torch's, holding every parameter and the hyper-parameters (with the
    class's defaults filled in), which schedulers may change between steps; ``local`` is the
    rank's own optimizer, over its pieces. ``state`` stays empty: the state lives in
    ``local``; ``state_dict()`` gathers it (a collective every rank must call).

    ``reduce_scatter``: whether the step's collectives are a reduce-scatter and an all-gather
    (the default, except on gloo: there an all-reduce and one broadcast per rank, which gloo
    runs faster; the results are the same).

    Parameters are dense CPU tensors of a dtype ``optimizer_class`` steps (no DTensors: FSDP2
    shards those already), not to be given new memory after construction (``p.data = ...``
    raises at the next step); every group is given at construction. Call ``step`` on every
    rank; do not wrap the model in DDP as well (the step averages the gradients itself).
    """

    def __init__(self, params: Iterable[Any], optimizer_class: type[Optimizer], *,
                 process_group: Any = None, reduce_scatter: bool | None = None,
                 **defaults: Any) -> None:
        if not (isinstance(optimizer_class, type) and issubclass(optimizer_class, Optimizer)):
            raise TypeError(f"optimizer_class: expected a fastopt.torch optimizer class, got "
                            f"{optimizer_class!r}")
        if not dist.is_initialized():
            raise RuntimeError("ZeroOptimizer needs torch.distributed's default process group "
                               "(torch.distributed.init_process_group)")
        self._building = True
        super().__init__(params, defaults)
        self._building = False
        self.process_group = process_group
        rank = dist.get_rank(process_group)
        ranks = dist.get_process_group_ranks(process_group or dist.group.WORLD)
        if reduce_scatter is None:
            reduce_scatter = "gloo" not in str(dist.get_backend(process_group))
        if not isinstance(reduce_scatter, bool):
            raise TypeError(f"reduce_scatter: expected a bool or None, got {reduce_scatter!r}")
        gloo = not reduce_scatter
        every = [p for group in self.param_groups for p in group["params"]]
        for i, p in enumerate(every):
            if dtensor.is_dtensor(p):
                raise TypeError(f"params[{i}]: expected a plain tensor, got a DTensor (FSDP2 "
                                "shards its state already: use fastopt.torch's optimizer)")
            tensors.check_param(f"params[{i}]", p)
            if not tensors.is_dense(p):
                raise ValueError(f"params[{i}]: expected a tensor dense in memory, got shape "
                                 f"{tuple(p.shape)} with strides {p.stride()}")
        self._memory = [(p.data_ptr(), p.stride()) for p in every]
        by_dtype: dict[torch.dtype, list[int]] = {}
        for i, p in enumerate(every):
            by_dtype.setdefault(p.dtype, []).append(i)
        self._shards = [Shard(ix, [every[i] for i in ix], rank, ranks, gloo)
                        for ix in by_dtype.values()]
        # Each parameter has at most one piece on a rank (a chunk is one range): the rank's
        # optimizer has one parameter per piece, grouped as the parameters are.
        piece_of = {shard.indices[q.param]: (shard, n) for shard in self._shards
                    for n, q in enumerate(shard.mine)}
        local_groups, self._local_index = [], {}  # parameter index -> local index
        start = 0
        for group in self.param_groups:
            members = [i for i in range(start, start + len(group["params"])) if i in piece_of]
            for i in members:
                self._local_index[i] = len(self._local_index)
            start += len(group["params"])
            local_groups.append({**{k: v for k, v in group.items() if k != "params"},
                                 "params": [piece_of[i][0].views[piece_of[i][1]] for i in members]})
        self._piece_of = piece_of
        self.local = optimizer_class(local_groups, **defaults)
        rule = optimizer_class.rule
        for g, local in enumerate(self.local.param_groups):  # every rank, pieces or none
            sharded.refuse(rule, rule.check_group(local), f"param_groups[{g}]",
                           "each rank's slice of the flat parameters")
        for group, local in zip(self.param_groups, self.local.param_groups):
            for key, value in local.items():
                if key != "params":
                    group.setdefault(key, value)
        self.defaults = {k: v for k, v in self.local.defaults.items() if k != "params"}
        self._every = every

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        if not getattr(self, "_building", False):
            raise NotImplementedError("ZeroOptimizer lays its parameters out once: give every "
                                      "group at construction")
        super().add_param_group(param_group)

    # ------------------------------------------------------------------ stepping
    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        """Average the gradients over the ranks, step this rank's slice, share it (every rank
        must call it); return ``closure()`` if given (called first, with gradients on)."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        grads = [self._gradient(i, p) for i, p in enumerate(self._every)]
        for shard in self._shards:
            shard.gather_gradients([grads[i] for i in shard.indices])
        for shard in self._shards:
            for view, grad in zip(shard.views, shard.reduce(self.process_group)):
                view.grad = grad
        for group, local in zip(self.param_groups, self.local.param_groups):
            for key, value in group.items():  # a schedule's changes reach the rank's optimizer
                if key != "params":
                    local[key] = value
        self.local.step()
        for shard in self._shards:
            shard.share(self.process_group)
        return loss

    def _gradient(self, i: int, p: torch.Tensor) -> torch.Tensor | None:
        if (p.data_ptr(), p.stride()) != self._memory[i]:
            raise RuntimeError(f"params[{i}]: its memory was replaced after the ZeroOptimizer "
                               "was made (p.data = ..., a parametrization, channels_last): "
                               "create the optimizer again")
        grad = p.grad
        if grad is not None and (grad.dtype != p.dtype or grad.shape != p.shape
                                 or grad.layout != torch.strided or grad.device != p.device):
            tensors.refuse_grad(f"params[{i}]", grad, p)
        return grad

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """torch's state dict of the whole optimizer, gathered from every rank (a collective:
        every rank calls it, and every rank gets the whole)."""
        local = self.local.state_dict()
        mine = {}
        for i, j in self._local_index.items():
            entry = local["state"].get(j)
            if entry is not None:
                q = self._piece(i)
                mine[i] = (q.start, {k: v.clone() if torch.is_tensor(v) else v
                                     for k, v in entry.items()})
        every_rank: list[Any] = [None] * dist.get_world_size(self.process_group)
        dist.all_gather_object(every_rank, mine, group=self.process_group)
        roles = self._roles()
        state = {}
        for i, p in enumerate(self._every):
            parts = sorted((part for rank in every_rank if i in rank for part in [rank[i]]),
                           key=lambda part: part[0])
            if not parts:
                continue
            entry = {}
            for key, value in parts[0][1].items():
                if key in roles and torch.is_tensor(value):
                    whole = torch.empty_like(p, dtype=value.dtype)
                    flat_view(whole).copy_(torch.cat([part[1][key] for part in parts]))
                    value = whole
                entry[key] = value
            state[i] = entry
        return {"state": state, "param_groups": validation.numbered_groups(self.param_groups)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Take a whole state dict (``state_dict()``'s, or torch.optim's over the same
        parameters), given to every rank: each keeps its slices. Everything is checked before
        anything changes."""
        if not isinstance(state_dict, Mapping) or not {"state", "param_groups"} <= set(state_dict):
            raise ValueError("state_dict: expected a dict with keys 'state' and 'param_groups'")
        saved_groups = state_dict["param_groups"]
        if not isinstance(saved_groups, (list, tuple)):
            raise TypeError("state_dict: expected 'param_groups' to be a list, got "
                            f"{type(saved_groups).__name__}")
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(f"state_dict: expected {len(self.param_groups)} param_groups, got "
                             f"{len(saved_groups)}")
        ids: dict[Any, int] = {}
        for g, (saved, group) in enumerate(zip(saved_groups, self.param_groups)):
            n = len(group["params"])
            if not isinstance(saved, Mapping) or len(saved.get("params", ())) != n:
                raise ValueError(f"state_dict: param_groups[{g}]: expected {n} parameters")
            ids.update((key, len(ids)) for key in saved["params"])
        roles = self._roles()
        local_state = {}
        for key, entry in state_dict["state"].items():
            if key not in ids:
                raise ValueError(f"state_dict: state for {key!r}, which no param_group lists")
            i = ids[key]
            p = self._every[i]
            if not isinstance(entry, Mapping):
                raise TypeError(f"state[params[{i}]]: expected a dict, got {type(entry).__name__}")
            for name, value in entry.items():
                if name in roles and torch.is_tensor(value) and value.shape != p.shape:
                    raise ValueError(f"state[params[{i}]][{name!r}]: expected shape "
                                     f"{tuple(p.shape)} (its parameter's), got "
                                     f"{tuple(value.shape)}")
            if i in self._local_index:
                q = self._piece(i)
                local_state[self._local_index[i]] = {
                    name: in_memory_order_of(p, value)[q.start:q.stop].clone()
                    if name in roles and torch.is_tensor(value) else value
                    for name, value in entry.items()}
        local_groups = [{**saved, "params": local["params"]} for saved, local in
                        zip(saved_groups, validation.numbered_groups(self.local.param_groups))]
        self.local.load_state_dict({"state": local_state, "param_groups": local_groups})
        for saved, group in zip(saved_groups, self.param_groups):
            group.update({k: v for k, v in saved.items() if k != "params"})

    def _piece(self, i: int) -> Piece:
        shard, n = self._piece_of[i]
        return shard.mine[n]

    def _roles(self) -> set[str]:
        return {*self.local.rule.role_names, COMPENSATION}

    def nbytes(self) -> int:
        """Bytes of per-element optimizer state this rank holds (its pieces')."""
        roles = self._roles()
        return sum(v.numel() * v.element_size() for entry in self.local.state.values()
                   for key, v in entry.items() if key in roles and torch.is_tensor(v))
