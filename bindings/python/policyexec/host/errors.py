"""PolicyExecError and the library's return codes."""

import enum


class Code(enum.IntEnum):
    """The library's return codes (``pe_error`` in common.h)."""
    OK = 0
    PENDING = 1
    INVALID_ARGUMENT = -1
    NOMEM = -2
    NOT_FOUND = -3
    EXISTS = -4
    JSON = -5
    PARAM = -6
    UNKNOWN_POLICY = -7
    PLUGIN = -8
    HEADER_NAME = -9
    HEADER_VALUE = -10
    TOO_MANY_HEADERS = -11
    HEADERS_TOO_LARGE = -12
    BODY_TOO_LARGE = -13
    POLICY = -14
    TIMEOUT = -15
    WORKER = -16
    BUSY = -17
    STATE = -18
    UNSUPPORTED = -19
    IO = -20
    INVALID_VALUE = -21


class PolicyExecError(Exception):
    """A call into libpolicyexec failed.

    ``code`` is the library's (negative) return code, ``name`` its symbolic
    name (``"PE_ERR_HEADER_VALUE"``), ``message`` the message of the object
    that refused the call (``pe_exchange_errmsg()`` etc.), or the code's
    description when the object has none.
    """

    def __init__(self, code, message, name=None):
        self.code = int(code)
        try:
            self.name = name or ("PE_ERR_" + Code(self.code).name)
        except ValueError:
            self.name = "PE_ERR_UNKNOWN"
        self.message = message
        super().__init__(f"{self.name}: {message}")


def closed(what):
    """The error raised when a closed (freed) object is used."""
    return PolicyExecError(Code.STATE, f"{what} is closed")
