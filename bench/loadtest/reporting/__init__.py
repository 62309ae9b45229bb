"""Turns a load-test output dir into report.md and charts (../report.py)."""
