"""A policy module that exits at import (tests/test_python_startup.c)."""
import sys

sys.exit("leaving at import on purpose")
