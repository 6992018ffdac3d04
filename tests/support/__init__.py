"""Helpers shared by the tests: one doit runner, one ``wait_until``, one free-port picker.

The fixtures built on them live in ``tests/conftest.py``.
"""
