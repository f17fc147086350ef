import pytest

from pevl_model_testutils import TINY, make_batch


@pytest.fixture
def tiny_cfg():
    return {k: (dict(v) if isinstance(v, dict) else v) for k, v in TINY.items()}


@pytest.fixture
def batch():
    return make_batch()
