"""CDS Hooks: an absent prefetch is fetched from the request's fhirServer, a real FHIR server on 127.0.0.1
(Medplum's FHIR router, tests/fhirserver) loaded with the Synthea and US Core artifacts of tests/feeds."""

from __future__ import annotations

import copy
import json
import re
import socket
import ssl
import threading
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.cdshooks.certificates import authority, server_certificate
from tests.cdshooks.fhir_node import Recorder, fhir_server, send
from tests.cdshooks.helpers import SERVICE, check_response, searchset
from tests.support.server import free_port, gunicorn

FEEDS = Path(__file__).resolve().parents[1] / "feeds" / "fhir"
TOKEN = "fetch-test-" + uuid.uuid4().hex
pytestmark = pytest.mark.e2e


def _artifact(name: str) -> dict[str, Any]:
    return json.loads((FEEDS / name).read_text())


def _template_codes() -> set[str]:
    from labinterp.cdshooks.cards import prefetch_templates
    from labinterp.core import load_knowledge

    return set(re.findall(r"http://loinc\.org\|([0-9-]+)", prefetch_templates(load_knowledge())["labs"]))


def _read_codes(resource: dict[str, Any]) -> set[str]:
    return {c.get("code") for c in resource.get("code", {}).get("coding", [])}


class Loaded:
    """The FHIR server, loaded, and the prefetch an EHR would send for each patient (built from the artifacts)."""

    def __init__(self, base: str, root: str, recorder: Recorder, context: ssl.SSLContext | None = None):
        self.base, self.root, self.recorder, self.context = base, root, recorder, context
        self.prefetch: dict[str, dict[str, Any]] = {}
        codes = _template_codes()
        # Synthea: a transaction, as Synthea's exports are loaded; the server gives the Patient its id
        bundle = _artifact("synthea-shaped-patient-bundle.json")
        status, answer = send("POST", base, bundle, TOKEN, context)
        assert status == 200, answer
        [synthea] = [e["response"]["location"].split("/")[1] for e in answer["entry"]
                     if e["response"]["location"].startswith("Patient/")]
        patient = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient")
        labs = [{**e["resource"], "subject": {"reference": f"Patient/{synthea}"}} for e in bundle["entry"]
                if e["resource"]["resourceType"] == "Observation" and _read_codes(e["resource"]) & codes]
        self.prefetch[synthea] = {"patient": {**patient, "id": synthea}, "labs": searchset(*labs)}
        # US Core: the serum calcium and potassium of Patient/example and their Specimen; that Patient is not
        # on the server (the read finds nothing: no age, as a null prefetch)
        us_core = [_artifact("us-core-Observation-serum-calcium.json"),
                   _artifact("us-core-Observation-serum-potassium.json")]
        for resource in [_artifact("Specimen-serum-hemolyzed.json"), *us_core]:
            status, answer = send("PUT", f"{base}/{resource['resourceType']}/{resource['id']}", resource, TOKEN,
                                  context)
            assert status in (200, 201), answer
        self.prefetch["example"] = {"patient": None, "labs": searchset(*us_core)}
        # two pages: 100 potassium results (normal), then the US Core calcium (low), the oldest, alone on page 2
        paged = {"resourceType": "Patient", "id": "paged", "gender": "female", "birthDate": "1961-02-03"}
        results = []
        for i in range(100):
            result = copy.deepcopy(us_core[1])
            result.update(id=f"paged-k-{i}", subject={"reference": "Patient/paged"},
                          effectiveDateTime=f"2026-01-01T{i // 60:02d}:{i % 60:02d}:00Z")
            results.append(result)
        results.append({**copy.deepcopy(us_core[0]), "id": "paged-ca", "subject": {"reference": "Patient/paged"}})
        entries = [{"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}}
                   for r in (paged, *results)]
        status, answer = send("POST", base, {"resourceType": "Bundle", "type": "transaction", "entry": entries},
                              TOKEN, context)
        assert status == 200, answer
        self.prefetch["paged"] = {"patient": paged, "labs": searchset(*results)}

    def requests(self) -> list[dict[str, str]]:
        with urllib.request.urlopen(self.root + "/_requests", timeout=10,  # noqa: S310 - loopback
                                    context=self.context) as response:
            return json.loads(response.read())  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def fhir():
    with Recorder() as recorder, fhir_server(token=TOKEN, redirect_to=recorder.root + "/fhir") as (base, root):
        yield Loaded(base, root, recorder)


@pytest.fixture(scope="module")
def labinterp(fhir, tmp_path_factory):
    log = tmp_path_factory.mktemp("fetch") / "server.log"
    env = {"LABINTERP_CDS_FHIR_SERVERS": f"{fhir.base},{fhir.root}/moved/fhir,{fhir.recorder.root}/fhir",
           "LABINTERP_CDS_ALLOW_HTTP_FHIR_SERVER": "1", "LABINTERP_CDS_FETCH_TIMEOUT": "10"}
    with gunicorn(env=env, workers=1, threads=4, log_path=log) as (base, _):
        yield base, log


def _call(base: str, patient_id: str, fhir_server: str | None = None, token: str | None = TOKEN,
          prefetch: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
    body: dict[str, Any] = {"hook": "patient-view", "hookInstance": str(uuid.uuid4()),
                            "context": {"userId": "Practitioner/example", "patientId": patient_id}}
    if fhir_server is not None:
        body["fhirServer"] = fhir_server
    if token is not None:
        body["fhirAuthorization"] = {"access_token": token, "token_type": "Bearer", "expires_in": 300,
                                     "scope": "patient/Patient.read patient/Observation.read", "subject": "labinterp"}
    if prefetch is not None:
        body["prefetch"] = prefetch
    req = urllib.request.Request(base + SERVICE, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as response:  # noqa: S310 - loopback only
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def _same(cards: list[dict[str, Any]]) -> list[str]:
    return sorted(json.dumps({k: v for k, v in card.items() if k != "uuid"}, sort_keys=True) for card in cards)


def _summaries(cards: list[dict[str, Any]]) -> list[str]:
    return [card["summary"] for card in cards]


# ------------------------------------------------------------------------------------- fetched = prefetched
def _fetched_equal_prefetched(fhir: Loaded, base: str, patient: str) -> None:
    patient_id = next(p for p in fhir.prefetch if p == patient or (patient == "synthea" and len(p) == 36))
    status, fetched = _call(base, patient_id, fhir.base)
    assert status == 200, fetched
    status, prefetched = _call(base, patient_id, fhir.base, prefetch=fhir.prefetch[patient_id])
    assert status == 200, prefetched
    assert _same(check_response(fetched)) == _same(check_response(prefetched))
    assert fetched["cards"], "the artifacts give cards: an empty answer would prove nothing"
    if patient in ("example", "paged"):
        # the US Core calcium (7.7 mg/dL, range 8.5-10.5) is low; for "paged" it is on the second page only
        assert any("calcium" in s.lower() for s in _summaries(fetched["cards"])), fetched


@pytest.mark.parametrize("patient", ["synthea", "example", "paged"])
def test_fetched_cards_equal_the_prefetched_cards(fhir, labinterp, patient):
    _fetched_equal_prefetched(fhir, labinterp[0], patient)


def test_a_page_limit_stops_at_the_first_page(fhir, app, monkeypatch):
    monkeypatch.setitem(app.extensions["labinterp"].settings, "CDS_FHIR_SERVERS", fhir.base)
    monkeypatch.setitem(app.extensions["labinterp"].settings, "CDS_ALLOW_HTTP_FHIR_SERVER", True)
    client = app.test_client()
    body = {"hook": "patient-view", "hookInstance": str(uuid.uuid4()), "context": {"patientId": "paged"},
            "fhirServer": fhir.base, "fhirAuthorization": {"access_token": TOKEN, "token_type": "Bearer"}}
    two = client.post(SERVICE, json=body).get_json()["cards"]
    monkeypatch.setitem(app.extensions["labinterp"].settings, "CDS_FETCH_MAX_PAGES", 1)
    one = client.post(SERVICE, json={**body, "hookInstance": str(uuid.uuid4())}).get_json()["cards"]
    assert any("calcium" in s.lower() for s in _summaries(two))
    assert not any("calcium" in s.lower() for s in _summaries(one))


# ------------------------------------------------------------------------------------------------ the token
def test_the_token_reaches_the_fhir_server_and_a_wrong_one_is_a_412(fhir, labinterp):
    base, log = labinterp
    before = len(fhir.requests())
    assert _call(base, "example", fhir.base)[0] == 200
    made = fhir.requests()[before:]
    assert [r["path"].split("?")[0] for r in made] == ["/fhir/Patient/example", "/fhir/Observation"]
    assert all(r["authorization"] == "token" for r in made) and all(r["method"] == "GET" for r in made)
    status, problem = _call(base, "example", fhir.base, token="not-the-token")
    assert status == 412 and problem["type"].endswith("prefetch-unavailable")
    assert problem["errors"][0]["pointer"] == "/fhirAuthorization" and "HTTP 401" in problem["detail"]
    status, problem = _call(base, "example", fhir.base, token=None)
    assert status == 412 and "carried no fhirAuthorization" in problem["detail"]
    assert fhir.requests()[-1]["authorization"] == "none"
    text = log.read_text()
    assert TOKEN not in text and "not-the-token" not in text and "example" not in text
    assert '"event": "cds_fetch"' in text or '"event":"cds_fetch"' in text


def test_a_redirect_is_not_followed_so_the_token_never_reaches_another_server(fhir, labinterp):
    base, _ = labinterp
    fhir.recorder.seen.clear()
    fhir.recorder.answer = (200, "application/fhir+json", json.dumps(fhir.prefetch["example"]["labs"]).encode())
    status, problem = _call(base, "example", fhir.root + "/moved/fhir")
    assert status == 412 and "redirect (HTTP 307)" in problem["detail"]
    assert fhir.recorder.seen == []
    # the recorder does see what is sent to it: pointed at it directly, it gets the token
    _call(base, "example", fhir.recorder.root + "/fhir")
    assert fhir.recorder.seen and fhir.recorder.seen[0]["authorization"] == f"Bearer {TOKEN}"


def test_a_next_link_to_another_server_is_not_followed(fhir, labinterp):
    base, _ = labinterp
    page = {**fhir.prefetch["example"]["labs"],
            "link": [{"relation": "next", "url": fhir.base + "/Observation?_offset=100"}]}
    fhir.recorder.answer = (200, "application/fhir+json", json.dumps(page).encode())
    before = len(fhir.requests())
    status, problem = _call(base, "example", fhir.recorder.root + "/fhir",
                            prefetch={"patient": None})
    assert status == 412 and "next page is on another server" in problem["detail"], problem
    assert fhir.requests()[before:] == []


# ---------------------------------------------------------------------------------------- https, allow-list
@pytest.fixture()
def allowed(app, monkeypatch, fhir):
    settings = app.extensions["labinterp"].settings

    def allow(servers: str, http: bool = False, **more: Any):
        monkeypatch.setitem(settings, "CDS_FHIR_SERVERS", servers)
        monkeypatch.setitem(settings, "CDS_ALLOW_HTTP_FHIR_SERVER", http)
        for name, value in more.items():
            monkeypatch.setitem(settings, name, value)
        return app.test_client()

    return allow


def _body(fhir_server: str, **extra: Any) -> dict[str, Any]:
    return {"hook": "patient-view", "hookInstance": str(uuid.uuid4()), "context": {"patientId": "example"},
            "fhirServer": fhir_server, "fhirAuthorization": {"access_token": TOKEN, "token_type": "Bearer"},
            **extra}


def _refused(response, pointer: str, words: str) -> None:
    assert response.status_code == 412 and response.mimetype == "application/problem+json", response.get_json()
    body = response.get_json()
    assert body["type"].endswith("prefetch-unavailable") and body["errors"][0]["pointer"] == pointer, body
    assert words in body["detail"], body["detail"]


def test_http_fhir_server_needs_the_development_override(allowed, fhir):
    _refused(allowed("*").post(SERVICE, json=_body(fhir.base)), "/fhirServer", "must use https")
    assert allowed("*", http=True).post(SERVICE, json=_body(fhir.base)).status_code == 200


def test_only_the_listed_fhir_servers_are_fetched_from(allowed, fhir):
    _refused(allowed("", http=True).post(SERVICE, json=_body(fhir.base)), "/fhirServer", "LABINTERP_CDS_FHIR_SERVERS")
    _refused(allowed("https://ehr.example.org/fhir", http=True).post(SERVICE, json=_body(fhir.base)), "/fhirServer",
             "not one of the FHIR servers")
    assert allowed(fhir.base + "/", http=True).post(SERVICE, json=_body(fhir.base)).status_code == 200


def test_no_fhir_server_is_a_412(allowed):
    body = _body("x")
    del body["fhirServer"]
    _refused(allowed("*").post(SERVICE, json=body), "/fhirServer", "no fhirServer")


@pytest.mark.parametrize("authorization, pointer", [
    ({"access_token": TOKEN, "token_type": "MAC"}, "/fhirAuthorization/token_type"),
    ({"access_token": "two\r\nX-Injected: 1", "token_type": "Bearer"}, "/fhirAuthorization/access_token"),
    ({"token_type": "Bearer"}, "/fhirAuthorization/access_token"),
])
def test_a_malformed_fhir_authorization_is_a_400(allowed, fhir, authorization, pointer):
    before = len(fhir.requests())
    response = allowed("*", http=True).post(SERVICE, json=_body(fhir.base, fhirAuthorization=authorization))
    assert response.status_code == 400 and response.get_json()["errors"][0]["pointer"] == pointer
    assert len(fhir.requests()) == before


# ------------------------------------------------------------------------- the server fails: 412, never a hang
def test_a_server_that_is_down_is_a_412(allowed):
    down = f"http://127.0.0.1:{free_port()}/fhir"
    _refused(allowed("*", http=True).post(SERVICE, json=_body(down)), "/fhirServer", "could not be reached")


def test_a_server_that_never_answers_is_a_412_after_the_timeout(allowed):
    with socket.socket() as silent:  # accepts connections (the kernel's backlog) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/fhir"
        client = allowed("*", http=True, CDS_FETCH_TIMEOUT=0.5)
        _refused(client.post(SERVICE, json=_body(url)), "/fhirServer", "did not answer within 0.5 s")


def test_a_server_trickling_its_headers_is_a_412_at_the_deadline(allowed):
    """Each byte comes well within the socket timeout; only the fetch's own deadline stops it."""
    stop = threading.Event()
    sent = [0]
    with socket.socket() as trickle:
        trickle.bind(("127.0.0.1", 0))
        trickle.listen(4)

        def serve() -> None:
            connection, _ = trickle.accept()
            with connection:
                connection.sendall(b"HTTP/1.1 200 OK\r\nX-Slow: ")
                for _ in range(600):  # bounded: at most 60 s
                    if stop.wait(0.1):
                        return
                    try:
                        connection.sendall(b"a")
                        sent[0] += 1
                    except OSError:
                        return  # labinterp hung up

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        url = f"http://127.0.0.1:{trickle.getsockname()[1]}/fhir"
        try:
            client = allowed("*", http=True, CDS_FETCH_TIMEOUT=1.0)
            _refused(client.post(SERVICE, json=_body(url)), "/fhirServer", "did not answer within 1 s")
            thread.join(10)
            assert not thread.is_alive() and sent[0] < 600, "labinterp hung up before the server gave up"
        finally:
            stop.set()
            thread.join(5)


def test_an_answer_over_the_byte_limit_is_a_412(allowed, fhir):
    body = _body(fhir.base, context={"patientId": "paged"})
    assert allowed("*", http=True).post(SERVICE, json=body).status_code == 200
    again = {**body, "hookInstance": str(uuid.uuid4())}
    _refused(allowed("*", http=True, FHIR_MAX_BODY_BYTES=20_000).post(SERVICE, json=again), "/fhirServer",
             "larger than 20000 bytes")


def test_an_answer_without_length_over_the_byte_limit_is_a_412(allowed, fhir):
    fhir.recorder.answer = (200, "application/fhir+json",
                            json.dumps(fhir.prefetch["paged"]["labs"]).encode())
    fhir.recorder.length = False
    try:
        body = _body(fhir.recorder.root + "/fhir", prefetch={"patient": None})
        assert allowed("*", http=True).post(SERVICE, json=body).status_code == 200
        _refused(allowed("*", http=True, FHIR_MAX_BODY_BYTES=20_000).post(SERVICE, json=body), "/fhirServer",
                 "larger than 20000 bytes")
    finally:
        fhir.recorder.length = True


@pytest.mark.parametrize("answer, words", [
    ((200, "text/html", b"<html><body>Welcome</body></html>"), "not JSON"),
    ((200, "application/json", b'{"hello": "world"}'), "no resourceType"),
    ((200, "application/fhir+json", b'{"resourceType": "Patient", "id": "example", "gender": "F"}'),
     "answer is refused"),
    ((200, "application/fhir+json", b'{"resourceType": "Patient", "id": "someone-else"}'), "not the patient"),
    ((500, "application/fhir+json", b"{}"), "HTTP 500"),
])
def test_an_answer_that_is_not_fhir_is_a_412(allowed, fhir, answer, words):
    fhir.recorder.answer = answer  # the Patient read only: the labs are prefetched
    body = _body(fhir.recorder.root + "/fhir", prefetch={"labs": searchset()})
    _refused(allowed("*", http=True).post(SERVICE, json=body), "/fhirServer", words)


def test_a_search_answered_with_another_resource_is_a_412(allowed, fhir):
    fhir.recorder.answer = (200, "application/fhir+json", b'{"resourceType": "Patient", "id": "example"}')
    _refused(allowed("*", http=True).post(SERVICE, json=_body(fhir.recorder.root + "/fhir")), "/fhirServer",
             "not a Bundle")


def test_a_patient_the_server_does_not_have_is_no_data(allowed, fhir):
    response = allowed("*", http=True).post(SERVICE, json=_body(fhir.base, context={"patientId": "nobody"}))
    assert response.status_code == 200 and response.get_json() == {"cards": []}


# -------------------------------------------------------------------------- prefetch present: nothing fetched
def test_a_complete_prefetch_fetches_nothing_and_a_partial_one_only_what_is_absent(allowed, fhir):
    client = allowed("*", http=True)
    before = len(fhir.requests())
    response = client.post(SERVICE, json=_body(fhir.base, prefetch=fhir.prefetch["example"]))
    assert response.status_code == 200 and len(fhir.requests()) == before
    response = client.post(SERVICE, json=_body(fhir.base, prefetch={"patient": None}))
    assert response.status_code == 200
    assert [r["path"].split("?")[0] for r in fhir.requests()[before:]] == ["/fhir/Observation"]


# ------------------------------------------------------------------------- https end to end: the real TLS path
# Three https FHIR servers on 127.0.0.1, each with a throwaway certificate: one issued for 127.0.0.1 by the CA
# labinterp trusts (SSL_CERT_FILE, which ssl.create_default_context reads), one for 127.0.0.1 by a CA it does
# not trust, one by the trusted CA for "localhost" only. No http override: the production path.
class Tls:
    def __init__(self, trusted: Loaded, untrusted: Loaded, misnamed: Loaded):
        self.trusted, self.untrusted, self.misnamed = trusted, untrusted, misnamed


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tls")
    ca, other_ca = authority(folder, "ca"), authority(folder, "other-ca")
    context = ssl.create_default_context(cafile=ca)
    context.load_verify_locations(cafile=other_ca)
    context.check_hostname = False  # the test's own reads of the misnamed server's /_requests
    with Recorder() as recorder, \
            fhir_server(token=TOKEN, tls=server_certificate(folder, "trusted", ca, "IP:127.0.0.1")) as trusted, \
            fhir_server(token=TOKEN, tls=server_certificate(folder, "untrusted", other_ca, "IP:127.0.0.1")) as un, \
            fhir_server(token=TOKEN, tls=server_certificate(folder, "misnamed", ca, "DNS:localhost")) as misnamed:
        yield Tls(Loaded(*trusted, recorder, context), Loaded(*un, recorder, context),
                  Loaded(*misnamed, recorder, context)), ca


@pytest.fixture(scope="module")
def labinterp_tls(tls, tmp_path_factory):
    servers, ca = tls
    log = tmp_path_factory.mktemp("fetch-tls") / "server.log"
    env = {"LABINTERP_CDS_FHIR_SERVERS": ",".join(s.base for s in (servers.trusted, servers.untrusted,
                                                                   servers.misnamed)),
           "LABINTERP_CDS_ALLOW_HTTP_FHIR_SERVER": "0", "LABINTERP_CDS_FETCH_TIMEOUT": "10",
           "SSL_CERT_FILE": str(ca), "SSL_CERT_DIR": str(ca.parent / "no-such-folder")}
    with gunicorn(env=env, workers=1, threads=4, log_path=log) as (base, _):
        yield base, log


@pytest.mark.parametrize("patient", ["synthea", "example", "paged"])
def test_https_fetched_cards_equal_the_prefetched_cards(tls, labinterp_tls, patient):
    servers, _ = tls
    assert servers.trusted.base.startswith("https://127.0.0.1:")
    _fetched_equal_prefetched(servers.trusted, labinterp_tls[0], patient)


def test_https_the_token_reaches_the_fhir_server(tls, labinterp_tls):
    servers, _ = tls
    before = len(servers.trusted.requests())
    assert _call(labinterp_tls[0], "example", servers.trusted.base)[0] == 200
    made = servers.trusted.requests()[before:]
    assert [r["path"].split("?")[0] for r in made] == ["/fhir/Patient/example", "/fhir/Observation"]
    assert all(r["authorization"] == "token" for r in made)


@pytest.mark.parametrize("server, words", [
    ("untrusted", "TLS certificate is not trusted (unable to get local issuer certificate)"),
    ("misnamed", "TLS certificate is not issued for fhirServer's host name"),
])
def test_https_a_certificate_not_trusted_is_a_412_and_the_token_is_not_sent(tls, labinterp_tls, server, words):
    servers, _ = tls
    refusing: Loaded = getattr(servers, server)
    base, log = labinterp_tls
    before = len(refusing.requests())  # it holds the artifacts too: without verification the answer has cards
    status, problem = _call(base, "example", refusing.base)
    assert status == 412 and problem["type"].endswith("prefetch-unavailable"), problem
    assert problem["errors"][0]["pointer"] == "/fhirServer" and words in problem["detail"], problem
    assert refusing.requests()[before:] == [], "the handshake failed: no request, so no token, reached the server"
    assert "127.0.0.1" not in problem["detail"] and refusing.base not in log.read_text()
