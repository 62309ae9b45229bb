"""The lifetime every handle of the binding shares: freed once, by close(),
``with`` or garbage collection, never twice."""


class Handle:
    """Base of Engine, Chain and Exchange. A subclass sets ``_h`` (the C
    handle) and ``_lib``, and names its free function in ``_FREE``."""

    _FREE = None  # e.g. "pe_engine_free"
    _h = None

    def close(self):
        """Releases the handle (idempotent)."""
        h, self._h = self._h, None
        if h:
            getattr(self._lib, self._FREE)(h)

    def __del__(self):
        try:
            self.close()
        except Exception:  # interpreter shutdown
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @property
    def closed(self):
        """Whether :meth:`close` has run."""
        return self._h is None
