import os
from pathlib import Path

import pytest


@pytest.fixture
def shared_data() -> Path:
    """The real data samples (../shared/data); tests using them skip when REST_TEST_DATA is unset."""
    root = os.environ.get("REST_TEST_DATA")
    if not root:
        pytest.skip("REST_TEST_DATA is not set")
    return Path(root)
