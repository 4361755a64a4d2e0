"""Helpers shared by several test files (imported as ``helpers``; tests/ is on pytest's ``pythonpath``)."""
