"""Body: a large body read in place from shared memory.

A body of at least the engine's shared-memory threshold (64 KiB unless the
host set another, see ``pe_python_options_set_shm_threshold``) reaches the
worker in a sealed memfd, and ``ctx.request_body`` / ``ctx.response_body``
is then a :class:`Body` over a read-only mapping of it instead of ``bytes``:
nothing is copied until a policy asks for bytes.

A ``Body`` behaves like ``bytes`` where policies commonly use it:

* ``b"prefix" + body`` and ``body + b"suffix"`` give a new ``Body`` that
  records the prefix and suffix without copying the shared bytes; assigning
  it back (``ctx.request_body = b"x" + ctx.request_body``) sends only the
  prefix and suffix to the engine.
* ``len``, indexing and slicing (slices are ``bytes``), iteration, ``in``,
  ``==`` with bytes-like objects, ``hash``, ``startswith``, ``endswith``,
  ``decode`` and ``bytes(body)``.
* any other ``bytes`` method (``find``, ``split``, ``upper`` ...) works on a
  copy made on first use and kept.

What differs: a ``Body`` is not a ``bytes`` instance and does not export the
buffer protocol (Python 3.11 classes cannot), so code that needs exactly
``bytes`` (``json.loads``, ``hashlib`` and the like) takes ``bytes(body)``,
or ``body.view`` (a read-only ``memoryview``, no copy) where a buffer will
do. A ``Body`` is valid during the batch of steps that received it: the
engine then reuses the shared memory, so using it later raises ValueError;
keep ``bytes(body)`` to retain the content.
"""


def _as_bytes(value):
    if isinstance(value, Body):
        return bytes(value)
    if type(value) is bytes:
        return value
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    raise TypeError(f"can't concat {type(value).__name__} to policyexec.Body")


class Body:
    """A read-only body: ``head`` + shared bytes + ``tail`` (see the module doc)."""

    __slots__ = ("_head", "_view", "_tail", "_bytes", "_map")

    def __init__(self, view, head=b"", tail=b"", mapping=None):
        self._view = view
        self._head = head
        self._tail = tail
        self._bytes = None
        self._map = mapping

    def _release(self):
        """Ends the body's life with its batch: the engine reuses the shared
        memory for a later request, so a Body kept past its step must fail
        (ValueError on use) rather than show other bytes. A view taken with
        ``.view`` and still referenced keeps the mapping open (BufferError
        here, ignored): such a view must not outlive the step."""
        mapping = self._map
        if mapping is None:
            return
        self._map = None
        self._view.release()
        try:
            mapping.close()
        except BufferError:
            pass

    @property
    def view(self):
        """A read-only ``memoryview`` of the body (no copy when it has no
        prefix or suffix added)."""
        if not self._head and not self._tail:
            return self._view
        return memoryview(bytes(self))

    def __bytes__(self):
        if self._bytes is None:
            try:
                self._bytes = b"".join((self._head, self._view, self._tail))
            except TypeError:
                self._view.nbytes  # raises ValueError if released
                raise
        return self._bytes

    tobytes = __bytes__

    def __len__(self):
        return len(self._head) + len(self._view) + len(self._tail)

    def __repr__(self):
        return f"<policyexec.Body of {len(self)} bytes>"

    def __add__(self, other):
        return Body(self._view, self._head, self._tail + _as_bytes(other))

    def __radd__(self, other):
        return Body(self._view, _as_bytes(other) + self._head, self._tail)

    # Derived bodies share the mapping but not its release: the original,
    # which the worker holds, releases it (and with it their view).

    def _plain(self):
        return not self._head and not self._tail

    def __eq__(self, other):
        if not isinstance(other, (Body, bytes, bytearray, memoryview)):
            return NotImplemented
        if len(self) != len(other):
            return False  # e.g. a prefixed body: no copy to tell
        if isinstance(other, Body):
            if other._plain() and not self._plain():
                return other.__eq__(self)
            other = bytes(other)
        if self._plain():
            # bytes.startswith takes a buffer and compares with memcmp.
            other = other if type(other) is bytes else bytes(other)
            return len(other) == len(self._view) and other.startswith(self._view)
        return bytes(self) == other

    def __ne__(self, other):
        eq = self.__eq__(other)
        return eq if eq is NotImplemented else not eq

    def __hash__(self):
        return hash(bytes(self))

    def __getitem__(self, key):
        if self._plain():
            item = self._view[key]
            return item.tobytes() if isinstance(item, memoryview) else item
        return bytes(self)[key]

    def __iter__(self):
        return iter(self._view) if self._plain() else iter(bytes(self))

    def __contains__(self, item):
        return item in bytes(self)

    def startswith(self, prefix, *args):
        if self._plain() and not args and isinstance(prefix, bytes):
            return bytes(self._view[:len(prefix)]) == prefix
        return bytes(self).startswith(prefix, *args)

    def endswith(self, suffix, *args):
        if self._plain() and not args and isinstance(suffix, bytes):
            n = len(suffix)
            return n <= len(self._view) and (n == 0 or bytes(self._view[-n:]) == suffix)
        return bytes(self).endswith(suffix, *args)

    def decode(self, encoding="utf-8", errors="strict"):
        if self._plain():
            return str(self._view, encoding, errors)
        return bytes(self).decode(encoding, errors)

    def __getattr__(self, name):
        # Every other bytes method, on a copy kept for the next call.
        return getattr(bytes(self), name)


def edits(side, old, new, prefix_kind, suffix_kind, replace_kind):
    """The body edits turning ``old`` into ``new`` when either is a Body, or
    None when the generic comparison applies: a ``new`` built from ``old``
    by concatenation gives its added prefix and suffix (nothing copied)."""
    if isinstance(new, Body) and isinstance(old, Body) and new._view is old._view \
            and new._head.endswith(old._head) and new._tail.startswith(old._tail):
        out = []
        head = new._head[:len(new._head) - len(old._head)]
        tail = new._tail[len(old._tail):]
        if head:
            out.append((side, prefix_kind, head))
        if tail:
            out.append((side, suffix_kind, tail))
        return out
    if isinstance(old, Body) and old._plain() and type(new) is bytes and len(new) >= len(old):
        if new.endswith(old._view):
            return [(side, prefix_kind, new[:len(new) - len(old)])]
        if new.startswith(old._view):
            return [(side, suffix_kind, new[len(old):])]
        return [(side, replace_kind, new)]
    if isinstance(old, Body) or isinstance(new, Body):
        return [(side, replace_kind, bytes(new))]
    return None
