"""Fixtures of the benchmark-data tests: `sandbox` and `mbpp_tasks` come from tests/conftest.py."""

from tests.conftest import MBPP_PATH  # noqa: F401  (../shared/data/mbpp/mbpp.jsonl)
