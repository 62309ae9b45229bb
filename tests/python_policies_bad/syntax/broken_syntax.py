"""A policy module with a syntax error (tests/test_python_startup.c)."""
import policyexec

class Broken(policyexec.Policy)
    name = "test-broken-syntax"
