import pytest

from primer.sandbox import Sandbox

from tests.conftest import MBPP_PATH  # noqa: F401  (../shared/data/mbpp/mbpp.jsonl)


@pytest.fixture(scope="session")
def sandbox():
    sb = Sandbox(2).warm()
    yield sb
    sb.close()


@pytest.fixture(scope="session")
def mbpp_tasks():
    from primer.evals import mbpp

    return mbpp.load_mbpp(MBPP_PATH)
