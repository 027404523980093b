"""``optimizer.state`` as torch's tools expect it: a live mapping they may write into.

torch.optim keeps ``state`` as a ``defaultdict(dict)`` of tensors that its step updates in
place, and tools read and write it directly (ZeroRedundancyOptimizer assigns
``optim.state[param] = {...}``; checkpoint code edits entries). fastopt.torch keeps the state
in the engine's buffers and shows it here as views of them, so reading is live; writing marks
the mapping *dirty*, and the optimizer takes the written values in (checked first) before its
next step or state dict. Deep-copied, the mapping and its entries are plain dicts; pickled (as
by ``torch.save``), ordered dicts, which ``torch.load(weights_only=True)`` reads.
"""

from __future__ import annotations

import copy
from collections import OrderedDict, defaultdict
from collections.abc import Callable
from typing import Any


class _Tracked:
    """A dict's changing methods, each marking the optimizer dirty first."""

    __slots__ = ()
    _touch: Callable[[], None]

    def __setitem__(self, key: Any, value: Any) -> None:
        self._touch()
        super().__setitem__(key, value)

    def __delitem__(self, key: Any) -> None:
        self._touch()
        super().__delitem__(key)

    def _changing(name: str) -> Callable[..., Any]:  # type: ignore[misc]
        method = getattr(dict, name)

        def changing(self: Entry, *args: Any, **kwargs: Any) -> Any:
            self._touch()
            return method(self, *args, **kwargs)

        changing.__name__ = name
        return changing

    for _name in ("pop", "popitem", "clear", "update", "setdefault", "__ior__"):
        locals()[_name] = _changing(_name)
    del _name, _changing

    def __reduce__(self) -> tuple:
        # Pickled (torch.save) as an OrderedDict: a dict subclass cannot be written as a
        # plain dict, and OrderedDict is what torch.load(weights_only=True) reads back.
        return OrderedDict, (list(self.items()),)

    def __copy__(self) -> dict:
        return dict(self)

    def __deepcopy__(self, memo: dict) -> dict:
        return {copy.deepcopy(k, memo): copy.deepcopy(v, memo) for k, v in self.items()}


class Entry(_Tracked, dict):
    """One parameter's state (a dict); any change to it marks the optimizer dirty."""

    __slots__ = ("_touch",)

    def __init__(self, touch: Callable[[], None], *args: Any) -> None:
        dict.__init__(self, *args)
        self._touch = touch


class LiveState(_Tracked, defaultdict):
    """parameter -> :class:`Entry`: a defaultdict, as torch's, whose missing entries are
    created empty on first access."""

    __slots__ = ("_touch",)

    def __init__(self, touch: Callable[[], None]) -> None:
        defaultdict.__init__(self, None)
        self._touch = touch

    def __missing__(self, key: Any) -> Entry:
        entry = Entry(self._touch)
        dict.__setitem__(self, key, entry)
        return entry

    def __setitem__(self, key: Any, value: Any) -> None:
        # torch lets anything be stored under any key; a parameter's dict becomes an Entry.
        if isinstance(value, dict) and not isinstance(value, Entry):
            value = Entry(self._touch, value)
        super().__setitem__(key, value)

    def setdefault(self, key: Any, default: Any = None) -> Any:
        if key not in self:
            self[key] = {} if default is None else default
        return dict.__getitem__(self, key)

    def update(self, *args: Any, **kwargs: Any) -> None:
        for key, value in dict(*args, **kwargs).items():
            self[key] = value

    def put(self, key: Any, entry: Entry) -> None:
        """Set an entry without marking anything dirty (the optimizer's own writes)."""
        dict.__setitem__(self, key, entry)
