"""One dtype's parameters laid out flat and cut into one shard per rank, with the collectives
of a sharded step (:class:`~fastopt.torch.zero.ZeroOptimizer`'s).

The parameters of a dtype lie end to end in one flat index space (:class:`Layout`), each from
a 64-byte boundary, cut into one chunk per rank, each a whole number of cache lines; a
:class:`Piece` is the part of one parameter in one chunk. :class:`Shard` holds the flat
buffers of a step and this rank's pieces (1-D views of the parameters' own memory): it copies
the gradients in, averages them over the ranks (each rank keeping its chunk) and shares the
stepped chunks back into every rank's parameters.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
import torch.distributed as dist

from ..flat import ALIGNMENT
from . import tensors

# torch 2.13 renamed the flat collectives (the old names warn)
_reduce_scatter = getattr(dist, "reduce_scatter_single", None) or dist.reduce_scatter_tensor
_all_gather = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor


class Piece(NamedTuple):
    """Elements ``start`` to ``stop`` (in memory order) of parameter ``param`` of a layout, in
    chunk ``chunk`` (the rank that steps them) from offset ``at`` on."""

    param: int
    start: int
    stop: int
    chunk: int
    at: int


class Layout:
    """Parameters of ``sizes`` elements of ``element_size`` bytes end to end in a flat index
    space, each from a 64-byte boundary, cut into ``world`` chunks of ``shard`` elements (whole
    cache lines); the gradient buffer's chunks are ``shard`` elements and then one slot per
    parameter they touch (``flag_slots`` in all, whole cache lines too)."""

    def __init__(self, sizes: list[int], element_size: int, world: int) -> None:
        align = max(1, ALIGNMENT // element_size)
        self.offsets, end = [], 0
        for n in sizes:
            self.offsets.append(end)
            end += -(-n // align) * align
        per_rank = -(-end // world)
        self.shard = max(1, -(-per_rank // align)) * align
        self.world = world
        self.pieces: list[list[Piece]] = [[] for _ in sizes]
        self.touching: list[list[int]] = [[] for _ in range(world)]  # chunk -> its parameters
        for k, (offset, n) in enumerate(zip(self.offsets, sizes)):
            for c in range(offset // self.shard, min(world, -(-(offset + n) // self.shard))):
                lo, hi = max(offset, c * self.shard), min(offset + n, (c + 1) * self.shard)
                if lo < hi:
                    piece = Piece(k, lo - offset, hi - offset, c, lo - c * self.shard)
                    self.pieces[k].append(piece)
                    self.touching[c].append(k)
        most = max(len(t) for t in self.touching)
        self.flag_slots = -(-most // align) * align
        self.grad_chunk = self.shard + self.flag_slots

    def mine(self, rank: int) -> list[Piece]:
        return [p for pieces in self.pieces for p in pieces if p.chunk == rank]

    def flag_positions(self) -> tuple[list[int], list[int]]:
        """Where each chunk's slot for each parameter it touches lies in the gradient
        buffer, and which parameter it is for."""
        positions, params = [], []
        for c, touching in enumerate(self.touching):
            for slot, k in enumerate(touching):
                positions.append(c * self.grad_chunk + self.shard + slot)
                params.append(k)
        return positions, params


def flat_view(t: torch.Tensor) -> torch.Tensor:
    """A dense tensor's elements as 1-D, in memory order, over the same memory."""
    return t.as_strided((t.numel(),), (1,), t.storage_offset())


def in_memory_order_of(p: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """``t`` (of ``p``'s shape) as 1-D with its elements in the order ``p``'s lie in memory:
    itself when laid out as ``p``, else a copy."""
    if t.stride() != p.stride() or not tensors.is_dense(t):
        t = torch.empty_strided(p.shape, p.stride(), dtype=t.dtype).copy_(t)
    return flat_view(t)


class Shard:
    """One dtype's parameters: their layout, the flat buffers of the step, and this rank's
    pieces (each a 1-D view of a parameter, stepped by the rank's optimizer).

    ``ranks``: the global rank of each rank of the group; ``gloo``: whether to reduce by an
    all-reduce of which each rank keeps its chunk, and to gather by one broadcast per chunk
    (all in flight at once), rather than by a reduce-scatter and an all-gather: gloo's are
    no ring algorithms (40 MB over 2 ranks on the 2-core CI machine: 95 ms and 64 ms, where
    its all-reduce took 24 ms and a broadcast of each half 13 ms)."""

    def __init__(self, indices: list[int], params: list[torch.Tensor], rank: int,
                 ranks: list[int], gloo: bool) -> None:
        self.indices, self.params = indices, params  # indices: into the optimizer's list
        world = len(ranks)
        self.layout = layout = Layout([p.numel() for p in params], params[0].element_size(),
                                      world)
        self.rank, self.ranks, self.gloo, dtype = rank, ranks, gloo, params[0].dtype
        self.grads = torch.zeros(world * layout.grad_chunk, dtype=dtype)
        self.reduced = (self.grads[rank * layout.grad_chunk:(rank + 1) * layout.grad_chunk]
                        if gloo else torch.zeros(layout.grad_chunk, dtype=dtype))
        self.gathered = torch.zeros(world * layout.shard, dtype=dtype)
        self.mine = layout.mine(rank)
        self.views = [flat_view(p.detach())[q.start:q.stop] for q, p in
                      ((q, params[q.param]) for q in self.mine)]
        positions, flagged = layout.flag_positions()
        self.flag_positions = torch.tensor(positions, dtype=torch.long)
        self.flag_params = torch.tensor(flagged, dtype=torch.long)
        # where each of this rank's pieces finds its flag in the reduced chunk
        touching = layout.touching[rank]
        self.my_flags = [layout.shard + touching.index(q.param) for q in self.mine]

    def gather_gradients(self, grads: list[torch.Tensor | None]) -> None:
        """Copy the (checked) gradients into the flat buffer, zeros where there is none, and
        every chunk's flags."""
        has = torch.zeros(len(self.params), dtype=self.grads.dtype)
        for k, (p, grad) in enumerate(zip(self.params, grads)):
            flat = None if grad is None else in_memory_order_of(p, grad)
            for q in self.layout.pieces[k]:
                at = q.chunk * self.layout.grad_chunk + q.at
                target = self.grads[at:at + q.stop - q.start]
                if flat is None:
                    target.zero_()
                else:
                    target.copy_(flat[q.start:q.stop])
            has[k] = grad is not None
        self.grads[self.flag_positions] = has[self.flag_params]

    def reduce(self, group: Any) -> list[torch.Tensor | None]:
        """The reduce-scatter; returns the averaged gradient of each of this rank's pieces, or
        None where no rank had one."""
        if self.gloo:
            dist.all_reduce(self.grads, op=dist.ReduceOp.AVG, group=group)
        else:
            _reduce_scatter(self.reduced, self.grads, op=dist.ReduceOp.AVG, group=group)
        active = (self.reduced[self.my_flags] > 0).tolist() if self.mine else []
        return [self.reduced[q.at:q.at + q.stop - q.start] if on else None
                for q, on in zip(self.mine, active)]

    def share(self, group: Any) -> None:
        """The all-gather of the stepped chunks, copied into the other ranks' pieces."""
        shard = self.layout.shard
        own = self.gathered[self.rank * shard:(self.rank + 1) * shard]
        for q, view in zip(self.mine, self.views):
            own[q.at:q.at + q.stop - q.start].copy_(view)
        if self.gloo:
            for work in [dist.broadcast(self.gathered[c * shard:(c + 1) * shard], src, group=group,
                                        async_op=True) for c, src in enumerate(self.ranks)]:
                work.wait()
        else:
            _all_gather(self.gathered, own, group=group)
        for k, p in enumerate(self.params):
            flat = flat_view(p.detach())
            for q in self.layout.pieces[k]:
                if q.chunk != self.rank:
                    at = q.chunk * shard + q.at
                    flat[q.start:q.stop].copy_(self.gathered[at:at + q.stop - q.start])

