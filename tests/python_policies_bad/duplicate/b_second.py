"""Defines test-duplicate@1.0.0 again (see a_first.py)."""
import policyexec


class Second(policyexec.Policy):
    name = "test-duplicate"
    version = "1.0.0"

    def on_request_headers(self, ctx):
        pass
