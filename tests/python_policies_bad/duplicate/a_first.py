"""Defines test-duplicate@1.0.0 (so does b_second.py: tests/test_python_startup.c)."""
import policyexec


class First(policyexec.Policy):
    name = "test-duplicate"
    version = "1.0.0"

    def on_request_headers(self, ctx):
        pass
