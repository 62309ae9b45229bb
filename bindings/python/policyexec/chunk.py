"""BodyChunk: one chunk of a streamed body, as a streamed step sees it.

A policy that defines ``on_request_body_chunk(self, ctx, chunk)`` and/or
``on_response_body_chunk(self, ctx, chunk)`` takes that body in chunks: the
engine need not buffer it, and calls the method once per chunk, in order,
the last call with ``chunk.last`` true (possibly with no data: a 0-byte
body is one call). What the step passes on is what it writes:

* ``chunk.data``: the input, read-only: ``bytes``, or from the engine's
  shared-memory threshold on (64 KiB by default) a :class:`policyexec.Body`
  read in place. It starts with the bytes the step held back last time.
* ``chunk.write(b)``: appends ``b`` (bytes-like, or str as UTF-8) to the
  output; ``chunk.forward(start, end)``: appends input bytes
  ``[start, end)`` without copying them (the engine already has them).
* returning a value is the same as writing it last; returning
  ``chunk.data`` itself forwards the whole input without a copy.
* writing nothing and returning ``None`` drops the chunk.
* ``chunk.keep(n)``: holds back the last ``n`` input bytes: they are not
  passed on now and come again, first, in the next call's ``chunk.data``
  (not allowed on the last chunk). The last call wins.
* ``chunk.state``: per-body state, ``None`` on the first chunk; assign
  anything (a hash, a count): it is the same object on the next chunk of
  this body, and is dropped after the last chunk, when the step fails, when
  the exchange is reset or freed unfinished, and when the worker is
  replaced (then the step fails by its failure mode).
* ``chunk.side``: ``SIDE_REQUEST`` (0) or ``SIDE_RESPONSE`` (1).

``ctx`` is the exchange as in the body phase, without the body: headers,
metadata (settable), :meth:`Context.respond` (stops the stream). Raising
fails the step: fail-open passes this call's input (held bytes included) on
unchanged and skips the step for the rest of the body; fail-closed stops
the stream. ``chunk.data`` (a Body) and anything taken from ``.view`` are
valid during the call only: keep ``bytes(...)`` of what must outlive it.
Chunk methods are plain functions (not ``async def``).

When another step of the chain needs the whole body, the engine buffers it
and the chunk method runs once with the whole body as its last chunk.
"""

from . import _text
from .body import Body

SIDE_REQUEST = 0
SIDE_RESPONSE = 1


class BodyChunk:
    """One chunk of a streamed body (see the module doc)."""

    __slots__ = ("data", "last", "side", "state", "_out", "_keep")

    def __init__(self, data, last, side=SIDE_REQUEST, state=None):
        self.data = data
        self.last = bool(last)
        self.side = side
        self.state = state
        self._out = []  # (start, end) input runs and bytes, in order
        self._keep = 0

    def write(self, data):
        """Appends ``data`` (bytes-like, Body or str) to what goes on."""
        if data is self.data:
            self.forward()
            return
        if isinstance(data, Body):
            data = bytes(data)
        elif isinstance(data, str):
            data = _text.encode(data)
        elif not isinstance(data, bytes):
            if not isinstance(data, (bytearray, memoryview)):
                raise TypeError(f"a chunk's output must be bytes-like, not {type(data).__name__}")
            data = bytes(data)
        if data:
            self._out.append(data)

    def forward(self, start=0, end=None):
        """Appends input bytes ``[start, end)`` (default: all) to what goes
        on, without copying them."""
        size = len(self.data)
        if end is None:
            end = size
        if not (isinstance(start, int) and isinstance(end, int)) or not 0 <= start <= end <= size:
            raise ValueError(f"forward({start!r}, {end!r}) outside the chunk's {size} bytes")
        if start == end:
            return
        out = self._out
        if out and type(out[-1]) is tuple and out[-1][1] == start:
            out[-1] = (out[-1][0], end)  # the next run of the input: one piece
        else:
            out.append((start, end))

    def keep(self, n):
        """Holds back the last ``n`` input bytes until the next chunk."""
        if not isinstance(n, int) or isinstance(n, bool) or not 0 <= n <= len(self.data):
            raise ValueError(f"keep({n!r}) outside the chunk's {len(self.data)} bytes")
        if self.last and n:
            raise ValueError("nothing can be held back past the last chunk: write it")
        self._keep = n

    def _finish(self, returned):
        """What the call returned, written last; returns (pieces, keep)."""
        if returned is not None:
            self.write(returned)
        return self._out, self._keep

    def _joined(self):
        """The output as one bytes object (a buffered body phase)."""
        data = self.data
        return b"".join(data[p[0]:p[1]] if type(p) is tuple else p for p in self._out)
