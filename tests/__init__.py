"""The test suite, a package: helpers import as ``tests.<area>.<module>`` (run ``python -m pytest``)."""
