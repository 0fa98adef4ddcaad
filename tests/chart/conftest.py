"""The ``ci_case`` fixture: every ``ci/*-values.yaml`` value set of the chart.

Helpers live in chart_helpers.py (a plain module, so imports never depend on which conftest.py
pytest loaded last).
"""

from __future__ import annotations

import pytest
from chart_helpers import CI_CASES


@pytest.fixture(params=CI_CASES)
def ci_case(request: pytest.FixtureRequest) -> str:
    """Each ``ci/*-values.yaml`` file name."""
    return str(request.param)
