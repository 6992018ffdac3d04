"""Reusable pieces for tests: a headless Chromium driven by selenium, a trame site behind Apache."""
