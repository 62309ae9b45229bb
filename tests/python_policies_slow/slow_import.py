"""A policy module whose import sleeps while the file named by the
environment variable PE_TEST_SLOW_IMPORT_FLAG exists: a worker that takes
long to start (tests/test_python_create.c)."""

import os
import time

import policyexec

_flag = os.environ.get("PE_TEST_SLOW_IMPORT_FLAG")
if _flag and os.path.exists(_flag):
    time.sleep(30)


class Quick(policyexec.Policy):
    """Does nothing, quickly."""

    name = "test-slow-import"
    version = "1.0.0"

    def on_request_headers(self, ctx):
        pass
