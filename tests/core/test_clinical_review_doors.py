"""Issue 12 through the v1 JSON door: neonatal critical potassium and the Hunterdon age edges."""

from __future__ import annotations

import pytest


def _potassium(client, value: float, age_days: float) -> dict:  # type: ignore[no-untyped-def]
    body = {"results": [{"analyte": "potassium", "value": value, "unit": "mmol/L"}],
            "patient": {"age_days": age_days}}
    response = client.post("/v1/interpret", json=body)
    assert response.status_code == 200, response.get_json()
    return response.get_json()["results"][0]


@pytest.mark.parametrize("value, age_days, flag, critical", [
    (8.5, 1, "HH", True), (7.79, 1, "H", False),        # Kost 1991 newborn >= 7.8 mmol/L
    (6.4, 30, "HH", True), (6.39, 30, "H", False),      # Kost 1991 children >= 6.4 mmol/L
    (6.0, 7, "H", False), (6.0, 8, "N", False),         # Hunterdon "0-7 days" holds day 7
    (5.5, 180, "N", False), (5.5, 181, "H", False),     # Hunterdon ">7days-180 days" holds day 180
])
def test_v1_door(client, value, age_days, flag, critical):  # type: ignore[no-untyped-def]
    result = _potassium(client, value, age_days)
    assert (result["flag"], result["critical"]) == (flag, critical)
