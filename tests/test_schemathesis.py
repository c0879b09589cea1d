"""schemathesis over every operation in the OpenAPI document, in-process against the WSGI app.

Every check runs except "positive data acceptance": the document describes shapes, and the service
also refuses, with a documented 422 problem+json, well-shaped data that is clinically meaningless
(an analyte name or unit the reference data does not know, a molar unit for albumin, an interval whose
low is above its high, both age_years and age_days). Those refusals are tested one by one in
tests/api/test_v1.py.
"""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import CHECKS

from labinterp.app import create_app

app = create_app({"TESTING": True})
schema = schemathesis.openapi.from_wsgi("/openapi.json", app)
EXCLUDED = [check for check in CHECKS.get_all() if check.__name__ == "positive_data_acceptance"]


@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_documented_operation(case):
    case.call_and_validate(excluded_checks=EXCLUDED)
