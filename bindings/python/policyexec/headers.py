"""Headers: the multi-valued, case-insensitive header map a policy edits."""

from . import _text
from ._text import _VALID_NAMES

_MISSING = object()


class Headers:
    """Request or response headers, as a case-insensitive multi-map.

    Names compare case-insensitively; a name keeps the spelling it was first
    given (or last set with ``[]=``). Several values of one name keep their
    order. Names and values are ``str`` (see :mod:`policyexec._text` for the
    byte mapping) and may be set as ``str`` or ``bytes``.

    Every change is checked at once: a name that is not an RFC 9110 token, or
    a value containing CR, LF, NUL or DEL, raises ``ValueError`` and changes
    nothing, so a policy can never inject a header.

    ``len()`` and iteration count distinct names; :meth:`items` yields one
    ``(name, value)`` pair per value.
    """

    __slots__ = ("_names", "_values", "_undo", "_side")

    def __init__(self, items=None):
        """Builds headers from a mapping or an iterable of (name, value) pairs."""
        self._names = {}
        self._values = {}
        self._undo = None
        self._side = 0
        if items is not None:
            if hasattr(items, "items"):
                items = items.items()
            for name, value in items:
                self.add(name, value)
            self._undo = None  # what it was built with is its starting state

    @classmethod
    def _from_wire(cls, flat, side):
        """Fast path for the worker: ``flat`` is [name, value, name, value, ...]
        as str, already validated by the engine."""
        self = cls.__new__(cls)
        names = {}
        values = {}
        it = iter(flat)
        for name in it:
            lname = name.lower()
            old = values.get(lname)
            if old is None:
                names[lname] = name
                values[lname] = [next(it)]
            else:
                old.append(next(it))
        self._names = names
        self._values = values
        self._undo = None
        self._side = side
        return self

    # ---- reading ----

    def get(self, name, default=None):
        """The first value of ``name``, or ``default`` when absent."""
        values = self._values.get(_lower(name))
        return values[0] if values else default

    def getall(self, name, default=_MISSING):
        """Every value of ``name`` as a new list; ``[]`` (or ``default``) when absent."""
        values = self._values.get(_lower(name))
        if values:
            return list(values)
        return [] if default is _MISSING else default

    def __getitem__(self, name):
        """The first value of ``name``; ``KeyError`` when absent."""
        values = self._values.get(_lower(name))
        if not values:
            raise KeyError(name)
        return values[0]

    def __contains__(self, name):
        return _lower(name) in self._values

    def __len__(self):
        return len(self._values)

    def __iter__(self):
        return iter(list(self._names.values()))

    def keys(self):
        """Distinct header names, each once, in first-seen order."""
        return list(self._names.values())

    def items(self):
        """A list of (name, value) pairs, one per value."""
        names = self._names
        return [(names[l], v) for l, vs in self._values.items() for v in vs]

    def __eq__(self, other):
        if isinstance(other, Headers):
            return self._values == other._values
        return NotImplemented

    def __repr__(self):
        return f"Headers({self.items()!r})"

    # ---- writing ----

    def __setitem__(self, name, value):
        """Replaces every value of ``name`` with ``value``."""
        # The checks of _text.header_name and header_value, inlined for the
        # common case: a str name seen before, a printable ASCII str value.
        lname = _VALID_NAMES.get(name) if type(name) is str else None
        if lname is None:
            name, lname = _text.header_name(name)
        if not (type(value) is str and value.isascii() and value.isprintable()):
            value = _text.header_value(value)
        names = self._names
        values = self._values
        undo = self._undo
        if undo is None:
            self._undo = {lname: (names.get(lname), values.get(lname))}
        elif lname not in undo:
            undo[lname] = (names.get(lname), values.get(lname))
        names[lname] = name
        values[lname] = [value]

    def set(self, name, value):
        """Same as ``headers[name] = value``."""
        self[name] = value

    def setall(self, name, values):
        """Replaces every value of ``name`` with the list ``values`` (empty: remove)."""
        name, lname = _text.header_name(name)
        values = [_text.header_value(v) for v in values]
        self._remember(lname)
        if values:
            self._names[lname] = name
            self._values[lname] = values
        else:
            self._names.pop(lname, None)
            self._values.pop(lname, None)

    def add(self, name, value):
        """Appends one more value of ``name`` after any existing ones."""
        name, lname = _text.header_name(name)
        value = _text.header_value(value)
        self._remember(lname)
        old = self._values.get(lname)
        if old is None:
            self._names[lname] = name
            self._values[lname] = [value]
        else:
            # A new list, so the undo log may keep the old one by reference.
            self._values[lname] = old + [value]

    def remove(self, name):
        """Removes every value of ``name``; returns whether it was present."""
        lname = _lower(name)
        if lname not in self._values:
            return False
        self._remember(lname)
        del self._names[lname]
        del self._values[lname]
        return True

    def __delitem__(self, name):
        """Removes every value of ``name``; ``KeyError`` when absent."""
        if not self.remove(name):
            raise KeyError(name)

    # ---- change tracking, used by the worker between steps ----

    def _remember(self, lname):
        """Records the pre-step state of ``lname`` before its first change."""
        undo = self._undo
        if undo is None:
            self._undo = undo = {}
        if lname not in undo:
            undo[lname] = (self._names.get(lname), self._values.get(lname))

    def _commit(self, edits):
        """Appends (side, name, [values]) for each name whose values changed
        since the last commit and starts a new step."""
        undo = self._undo
        if not undo:
            return
        encode = _text.encode
        for lname, (old_name, old_values) in undo.items():
            values = self._values.get(lname)
            if values == old_values:
                continue
            name = self._names.get(lname) or old_name
            edits.append((self._side, encode(name),
                          [encode(v) for v in values] if values else []))
        self._undo = None

    def _rollback(self):
        """Restores every name changed since the last commit."""
        undo = self._undo
        if not undo:
            return
        for lname, (old_name, old_values) in undo.items():
            if old_values is None:
                self._names.pop(lname, None)
                self._values.pop(lname, None)
            else:
                self._names[lname] = old_name
                self._values[lname] = old_values
        self._undo = None


def _lower(name):
    """The lookup key of ``name`` (str or bytes); no validation on reads."""
    if type(name) is str:
        return name.lower()
    return _text.as_text(name, "header name").lower()
