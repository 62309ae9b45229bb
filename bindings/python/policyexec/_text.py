"""Text rules shared by headers, metadata and the request line.

Everything textual that a policy sees is a ``str``; the wire carries bytes.
The two are mapped with UTF-8 and the ``surrogateescape`` error handler, so
bytes that are not UTF-8 (HTTP allows them) come back exactly as they came
in, and a policy that writes ``"é"`` or ``"€"`` sends their UTF-8 bytes.
Setters also accept ``bytes`` (and ``bytearray``/``memoryview``), taken as is.
"""

import re

from .body import Body

# RFC 9110 section 5.6.2: token = 1*tchar.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# A field value may not carry CR, LF or NUL: that is how headers get injected;
# nor DEL, which RFC 9110 leaves out of field values (same rule as the engine).
_FORBIDDEN_IN_VALUE = re.compile(r"[\r\n\x00\x7f]")
# Request target: no controls, spaces, DEL or non-ASCII (same rule as the engine).
_BAD_IN_PATH = re.compile(r"[\x00-\x20\x7f-\U0010ffff]")

ENCODING = "utf-8"
ERRORS = "surrogateescape"


def decode(data):
    """Bytes from the wire -> str (lossless, see the module docstring)."""
    return data.decode(ENCODING, ERRORS)


def encode(text):
    """str -> bytes for the wire; inverse of :func:`decode`."""
    return text.encode(ENCODING, ERRORS)


def as_text(value, what):
    """Accepts str or bytes-like and returns a str that is known to encode.

    Raises TypeError for other types and ValueError for strings holding
    lone surrogates that UTF-8 cannot carry (anything but U+DC80..U+DCFF).
    """
    if type(value) is str:
        try:
            value.encode(ENCODING, ERRORS)
        except UnicodeEncodeError as exc:
            raise ValueError(f"{what} cannot be encoded: {exc.reason}") from None
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode(ENCODING, ERRORS)
    if isinstance(value, str):
        return as_text(str(value), what)
    raise TypeError(f"{what} must be str or bytes, not {type(value).__name__}")


# Header names (exactly str) already found valid -> their lowercase: policies
# set the same few names over and over. Bounded: cleared when full.
_VALID_NAMES = {}
_VALID_NAMES_MAX = 256


def header_name(name):
    """Validates a header name; returns (name, lowercased name)."""
    if type(name) is str:
        lname = _VALID_NAMES.get(name)
        if lname is not None:
            return name, lname
    name = as_text(name, "header name")
    if not _TOKEN.fullmatch(name):
        raise ValueError(f"invalid header name {name!r}: not an RFC 9110 token")
    lname = name.lower()
    if len(_VALID_NAMES) >= _VALID_NAMES_MAX:
        _VALID_NAMES.clear()
    _VALID_NAMES[name] = lname
    return name, lname


def header_value(value):
    """Validates a header value (no CR, LF, NUL or DEL); returns it as str."""
    if type(value) is str and value.isascii() and value.isprintable():
        return value  # printable ASCII: no CR, LF, NUL, DEL, nor a lone surrogate
    value = as_text(value, "header value")
    if _FORBIDDEN_IN_VALUE.search(value):
        raise ValueError(f"invalid header value {value!r}: contains CR, LF, NUL or DEL")
    return value


def method(value):
    """Validates a request method (an RFC 9110 token)."""
    value = as_text(value, "method")
    if not _TOKEN.fullmatch(value):
        raise ValueError(f"invalid method {value!r}: not an RFC 9110 token")
    return value


def path(value):
    """Validates a request target: non-empty, no controls, spaces or non-ASCII."""
    value = as_text(value, "path")
    if not value or _BAD_IN_PATH.search(value):
        raise ValueError(f"invalid path {value!r}: empty, or has a control, space or non-ASCII")
    return value


def status(value):
    """Validates an HTTP status code (an int in 100..999, as the engine)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"status must be int, not {type(value).__name__}")
    if not 100 <= value <= 999:
        raise ValueError(f"invalid status {value}: outside 100..999")
    return int(value)


def body(value, what):
    """Accepts bytes-like (or str, encoded UTF-8) and returns bytes."""
    if type(value) is bytes:
        return value
    if isinstance(value, (bytes, bytearray, memoryview, Body)):
        return bytes(value)
    if isinstance(value, str):
        return value.encode(ENCODING, ERRORS)
    raise TypeError(f"{what} must be bytes or str, not {type(value).__name__}")
