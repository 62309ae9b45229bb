"""Request bodies of the test: small JSON documents of an exact size."""
import os

BODY_PREFIX = b"[sample-response-body][sample-request-body]"


def make(size):
    """A JSON object of exactly size bytes (size >= 10), e.g. {"p":"aaaa"}."""
    head, tail = b'{"p":"', b'"}'
    fill = size - len(head) - len(tail)
    if fill < 1:
        raise ValueError(f"payload size {size} too small")
    # A repeating alphabet, so a truncated or shifted body cannot pass.
    alphabet = b"abcdefghijklmnopqrstuvwxyz0123456789"
    body = (alphabet * (fill // len(alphabet) + 1))[:fill]
    return head + body + tail


def write(out_dir, size):
    path = os.path.join(out_dir, f"payload-{size}.json")
    with open(path, "wb") as f:
        f.write(make(size))
    return path


def label(size):
    return f"{size // 1024} KiB" if size % 1024 == 0 else f"{size} B"


def expected(payload, with_policies):
    return BODY_PREFIX + payload if with_policies else payload
