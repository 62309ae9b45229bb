"""Metadata: the string map shared by all steps and phases of one exchange."""

from collections.abc import MutableMapping

from . import _text


class Metadata(MutableMapping):
    """A ``dict``-like map of str keys to str values, shared by every step.

    Keys compare exactly (case-sensitive) and must not be empty. Keys and
    values may be set as ``str`` or ``bytes`` and read back as ``str``
    (UTF-8 with ``surrogateescape``: arbitrary bytes survive; call
    ``policyexec.to_bytes(value)`` to get the exact bytes back).
    """

    __slots__ = ("_map", "_undo")

    def __init__(self, items=None):
        """Builds metadata from a mapping or an iterable of (key, value) pairs."""
        self._map = {}
        self._undo = None
        if items is not None:
            if hasattr(items, "items"):
                items = items.items()
            for key, value in items:
                self[key] = value
            self._undo = None  # what it was built with is its starting state

    @classmethod
    def _from_wire(cls, flat):
        """Fast path for the worker: ``flat`` is [key, value, ...] as str."""
        self = cls.__new__(cls)
        it = iter(flat)
        self._map = dict(zip(it, it))
        self._undo = None
        return self

    def __getitem__(self, key):
        return self._map[_key(key)]

    def __setitem__(self, key, value):
        key = _key(key)
        value = _text.as_text(value, "metadata value")
        self._remember(key)
        self._map[key] = value

    def __delitem__(self, key):
        key = _key(key)
        if key not in self._map:
            raise KeyError(key)
        self._remember(key)
        del self._map[key]

    def __contains__(self, key):
        try:
            return _key(key) in self._map
        except (TypeError, ValueError):
            return False

    def __iter__(self):
        return iter(list(self._map))

    def __len__(self):
        return len(self._map)

    def __repr__(self):
        return f"Metadata({self._map!r})"

    # ---- change tracking, used by the worker between steps ----

    def _remember(self, key):
        undo = self._undo
        if undo is None:
            self._undo = undo = {}
        if key not in undo:
            undo[key] = self._map.get(key)

    def _commit(self, edits):
        """Appends (key, value or None for removed) per changed key."""
        undo = self._undo
        if not undo:
            return
        encode = _text.encode
        for key, old in undo.items():
            new = self._map.get(key)
            if new != old:
                edits.append((encode(key), None if new is None else encode(new)))
        self._undo = None

    def _rollback(self):
        undo = self._undo
        if not undo:
            return
        for key, old in undo.items():
            if old is None:
                self._map.pop(key, None)
            else:
                self._map[key] = old
        self._undo = None


def _key(key):
    key = _text.as_text(key, "metadata key")
    if not key:
        raise ValueError("metadata key must not be empty")
    return key
