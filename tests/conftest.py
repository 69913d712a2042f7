from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"


@pytest.fixture
def root() -> Path:
    return ROOT

import sys  # noqa: E402

# reference_models/ is a top-level folder of the repository, imported by tests and fixtures.
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
