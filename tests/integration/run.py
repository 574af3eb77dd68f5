#!/usr/bin/python3
"""Runs the integration tests with pytest and ends with "N passed, N failed".

Env: BUILD_DIR (the meson build with the daemons), SHARED_DIR.
"""
import os
import sys

import pytest


class Count:
    def __init__(self):
        self.passed = 0
        self.failed = 0

    def pytest_runtest_logreport(self, report):
        if report.failed:
            self.failed += 1
        elif report.when == "call" and report.passed:
            self.passed += 1


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    count = Count()
    args = ["-q", "-p", "no:cacheprovider", "-W", "ignore::DeprecationWarning", here]
    args += sys.argv[1:]
    rc = pytest.main(args, plugins=[count])
    if rc not in (0, 5) and count.failed == 0:
        count.failed = 1  # collection/usage error
    print(f"{count.passed} passed, {count.failed} failed")
    return 1 if count.failed else 0


if __name__ == "__main__":
    sys.exit(main())
