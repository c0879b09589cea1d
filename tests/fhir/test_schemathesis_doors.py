"""schemathesis over the FHIR and CDS Hooks operations only, with more examples than the global run.

Same checks as tests/test_schemathesis.py (positive data acceptance excluded there, for the reason it
gives; here too: a well-shaped Observation with an unknown unit is answered 200 with an OperationOutcome,
but a well-shaped CDS call without its prefetch is answered 412: no FHIR server is allowed here to fetch it from).
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import CHECKS

from labinterp.app import create_app

app = create_app({"TESTING": True})
schema = schemathesis.openapi.from_wsgi("/openapi.json", app).include(path_regex="^/(fhir|cds-services)")
pytestmark = pytest.mark.slow
EXCLUDED = [check for check in CHECKS.get_all() if check.__name__ == "positive_data_acceptance"]


@schema.parametrize()
@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
def test_fhir_and_cds_operations(case):
    case.call_and_validate(excluded_checks=EXCLUDED)
