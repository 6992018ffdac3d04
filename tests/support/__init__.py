"""Helpers shared by the tests: one doit runner, one ``wait_until``, one free-port picker, real servers.

Importable as ``support`` since tests/ is on sys.path; the fixtures built on them live in ``tests/conftest.py``.
"""
