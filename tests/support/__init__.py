"""Helpers shared by the tests (importable as ``support`` since tests/ is on sys.path)."""
