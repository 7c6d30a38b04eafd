"""Fixtures of the end-to-end tests; the machinery lives in e2e_support.py (importable by the tests)."""
from e2e_support import fake_server, project, start_daemon  # noqa: F401  (fixtures)
