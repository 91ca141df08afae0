"""The web API fuzzed from its own OpenAPI schema with Schemathesis: no 5xx, every answer as documented.

Schemathesis reads ``/openapi.json`` from the app as ``digitnet serve`` builds it (Host check
included) and sends schema-valid and deliberately invalid requests of every documented kind (JSON
drawings, multipart uploads, raw images), talking ASGI directly, so no port is opened. Each answer
must be documented (status code, content type, headers, body schema), never a 5xx, and every error
must be JSON with one ``detail`` sentence. Hypothesis runs a bounded number of examples per
operation (``FUZZ_EXAMPLES``), about ten seconds in all.
"""

from __future__ import annotations

import numpy as np
import pytest

schemathesis = pytest.importorskip("schemathesis", reason="pip install schemathesis")
pytest.importorskip("fastapi", reason="the web extra is not installed: pip install 'digitnet[web]'")
from hypothesis import HealthCheck, settings  # noqa: E402

from digitnet.nn import build_mlp  # noqa: E402
from digitnet.web import create_app  # noqa: E402
from digitnet.web.server import host_policy  # noqa: E402

#: Examples per API operation; with the explicit examples and coverage cases, about 10 s in all.
FUZZ_EXAMPLES = 40


def serve_like_app():
    """The app exactly as ``digitnet serve`` builds it on 127.0.0.1 (an untrained 784-16-10 network)."""
    network = build_mlp((16,), rng=np.random.default_rng(0), metadata={"dataset": "mnist"})
    names, allow_ip_literals = host_policy("127.0.0.1")
    return create_app(network, allowed_hosts=names, allow_ip_literals=allow_ip_literals)


#: What a browser on the page sends; the app refuses other hosts (see test_server_limits.py).
HOST = {"Host": "127.0.0.1:8000"}
schema = schemathesis.openapi.from_asgi("/openapi.json", serve_like_app(), headers=HOST)


def errors_are_one_json_sentence(ctx, response, case) -> None:
    """Every 4xx/5xx answer is ``{"detail": "<one sentence>"}`` as JSON, nothing else."""
    if response.status_code < 400:
        return
    assert response.headers["content-type"][0].startswith("application/json"), response.headers
    body = response.json()
    assert set(body) == {"detail"}, body
    detail = body["detail"]
    assert isinstance(detail, str) and detail.strip(), body
    # A sentence, not a code, a word or a list: it starts like one and ends with a full stop.
    assert not detail[0].islower() and detail.endswith("."), detail
    assert "\n" not in detail and len(detail) < 600, detail


@schema.parametrize()
@settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
)
def test_the_api_answers_every_generated_request_as_its_schema_says(case):
    # positive_data_acceptance is left out on purpose: a schema-valid drawing may still hold no
    # digit (all zeros, blank), and a schema-valid "binary" body is rarely an image; both are 422
    # by design, as documented.
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import positive_data_acceptance

    response = case.call_and_validate(
        headers=HOST, additional_checks=[errors_are_one_json_sentence], excluded_checks=[positive_data_acceptance]
    )
    not_a_server_error  # noqa: B018  # in the default checks; named here so the intent is plain
    assert response.status_code < 500


def test_the_fuzzed_schema_covers_every_api_operation():
    # If a route dropped out of the schema, the fuzzing above would silently stop testing it.
    operations = {(result.ok().method.upper(), result.ok().path) for result in schema.get_all_operations()}
    assert operations == {("POST", "/api/predict"), ("GET", "/api/model"), ("GET", "/healthz")}
