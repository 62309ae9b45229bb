"""Building blocks of the libpolicyexec load test (driven by ../loadtest.py)."""
