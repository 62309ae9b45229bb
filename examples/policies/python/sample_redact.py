"""sample-python-redact: the streamed Python sample policy.

It mirrors sample-native-redact: in request and response bodies of any
size, chunk by chunk, every run of 13 to 19 ASCII digits (not touching
another digit) keeps its last four digits and has the others replaced by
``*``. Lengths never change.

A run may straddle chunks, so a chunk that ends in digits holds them back
(``chunk.keep``) until the next chunk shows where the run ends. At most 20
digits are held: a run that long is no card number however it goes on, and
the 20 held digits still tell the next call so. Unchanged bytes are
forwarded (``chunk.forward``), not copied back to the engine.
"""

import re

import policyexec

_CARD_LIKE = re.compile(rb"[0-9]{13,}")  # maximal runs: a match starts a run
_HELD = 20


class SampleRedact(policyexec.Policy):
    """Masks card-like digit runs but their last four digits, streamed."""

    name = "sample-python-redact"
    version = "1.0.0"
    params = {}

    def on_request_body_chunk(self, ctx, chunk):
        _redact(chunk)

    def on_response_body_chunk(self, ctx, chunk):
        _redact(chunk)


def _redact(chunk):
    data = chunk.data
    # A shared-memory chunk is scanned in place through its memoryview.
    buf = data.view if type(data) is policyexec.Body else data
    n = len(buf)
    keep = 0
    if not chunk.last:
        while keep <= _HELD and keep < n and 48 <= buf[n - 1 - keep] <= 57:
            keep += 1
        keep = min(keep, _HELD)
    pos = 0
    for match in _CARD_LIKE.finditer(buf):
        start, end = match.span()
        if end == n and keep:
            break  # the run may go on in the next chunk
        if end - start <= 19:
            chunk.forward(pos, start)
            chunk.write(b"*" * (end - start - 4) + bytes(buf[end - 4:end]))
            pos = end
    chunk.forward(pos, n - keep)
    if keep:
        chunk.keep(keep)
