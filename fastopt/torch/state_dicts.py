"""Saving, loading, copying and pickling fastopt.torch's optimizers: torch's own code for
each, around the engine. torch packs and unpacks the state dict (its hooks, checks, casts and
defaults); what is added here is that the state it reads is the engine's, and that what it
loads is checked, and taken into the engine, or refused with everything as it was."""

from __future__ import annotations

import inspect
from typing import Any

import torch

from ..rules.storage import hypers as storage_hypers
from . import entries
from .state import Entry

STORAGE_HYPERS = storage_hypers()


def with_storage(torch_class: type) -> inspect.Signature:
    """A torch.optim class's signature, then the storage options every fastopt rule takes."""
    theirs = inspect.signature(torch_class)
    return theirs.replace(parameters=[*theirs.parameters.values(), *(
        inspect.Parameter(h.name, inspect.Parameter.KEYWORD_ONLY, default=h.default)
        for h in STORAGE_HYPERS)])


class StateDicts:
    """The state-dict methods of :class:`fastopt.torch.Optimizer` (a base it derives from
    before torch's classes, so that ``super()`` here is torch's)."""

    def state_dict(self) -> dict[str, Any]:
        """torch's state dict (torch's own packing and hooks): state tensors are views of the
        engine's buffers, live as torch.optim's are; each entry a plain dict (so that
        ``torch.load(weights_only=True)`` reads a saved one)."""
        if self._dirty:
            self._take_state_in()
        sd = super().state_dict()
        if isinstance(sd, dict) and isinstance(sd.get("state"), dict):  # a hook may replace it
            sd["state"] = {k: dict(v) if isinstance(v, Entry) else v
                           for k, v in sd["state"].items()}
        return sd

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """torch's ``load_state_dict`` (its hooks, checks, casts and defaults), refusing first,
        with ValueError or TypeError, what is no state dict at all; every group and entry is
        checked before anything changes."""
        if not isinstance(state_dict, dict) or not {"state", "param_groups"} <= set(state_dict):
            raise ValueError(
                "state_dict: expected a dict with keys 'state' and 'param_groups', got "
                + (f"keys {sorted(state_dict, key=str)}" if isinstance(state_dict, dict)
                   else type(state_dict).__name__))
        if not isinstance(state_dict["param_groups"], (list, tuple)) or not isinstance(
                state_dict["state"], dict):
            raise TypeError("state_dict: expected 'param_groups' to be a list and 'state' a dict")
        # torch casts every floating state tensor to its parameter's dtype as it loads; the
        # engine's storage may be another (float32 moments of bfloat16 parameters, 8-bit codes
        # and their float32 scales), so the tensors given are taken back where torch cast them.
        saved = [i for group in state_dict["param_groups"] if isinstance(group, dict)
                 for i in group.get("params", ())]
        current = [p for group in self.param_groups for p in group["params"]]
        self._given = {p: state_dict["state"][i] for i, p in zip(saved, current)
                       if isinstance(state_dict["state"].get(i), dict)}
        try:
            super().load_state_dict(state_dict)
        finally:
            del self._given

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Where ``load_state_dict`` lands (after torch's checks and casts), and where a copy
        or an unpickled optimizer is made: torch's class fills in the groups' defaults; the
        groups and the state are checked, and taken in, or everything is put back as it was."""
        if "_engine" not in self.__dict__:  # a deep copy or an unpickled optimizer: build it
            self._setup({h.name: state["defaults"][h.name] for h in STORAGE_HYPERS
                         if h.name in state["defaults"]})
            torch.optim.Optimizer.__setstate__(self, {"defaults": state["defaults"],
                                                      "param_groups": []})
            for group in state["param_groups"]:
                self.add_param_group(dict(group))
        before = {key: self.__dict__[key] for key in ("param_groups", "defaults", "state")}
        super().__setstate__(state)
        loaded = self.__dict__["state"]
        entries.uncast(loaded, self.__dict__.get("_given", {}))
        try:
            for g, group in enumerate(self.param_groups):
                for key, value in self._storage.items():  # a torch.optim dict lacks them
                    group.setdefault(key, value)
                self._check_group(g, group)  # torch's class filled in what older versions lacked
            self.state = loaded
            self._views = [[{} for _ in params] for params in self._params]
            self._versions = [-1] * len(self._versions)
            self._take_state_in()
        except BaseException:
            self.__dict__.update(before)
            self._views = [[{} for _ in params] for params in self._params]
            self._versions = [-1] * len(self._versions)
            self._dirty = False
            self._sync_views()
            raise
        self._engine.memo.forget()

    def __getstate__(self) -> dict[str, Any]:
        if self._dirty:
            self._take_state_in()
        return super().__getstate__()
