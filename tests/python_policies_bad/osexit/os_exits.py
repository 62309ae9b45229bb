"""A policy module that ends its process at import, saying nothing
(tests/test_python_startup.c)."""
import os

os._exit(7)
