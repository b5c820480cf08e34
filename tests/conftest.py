import pytest


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: long tests, run by `make test-slow` (and CI after `make test`)")
