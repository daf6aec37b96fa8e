"""The OpenAI-compatible backend against a real llama.cpp server on 127.0.0.1."""

import pytest

from lmtwin import LLMPredictor
from lmtwin.errors import BackendUnavailable
from lmtwin.llm import OpenAICompatBackend, check_backend
from lmtwin.predictors import Query
from tests.conftest import feed_linear, free_port

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def server(llama_server: str) -> str:
    return llama_server


def test_server_backend_conforms(server):
    check_backend(OpenAICompatBackend(server, model="gemma", repeat_penalty=1.0))


def test_llm_predictor_through_server(server, xy_twin):
    feed_linear(xy_twin, 30)
    llm = LLMPredictor(
        OpenAICompatBackend(server, model="gemma", supports_grammar=True,
                            repeat_penalty=1.0), grammar=True
    )
    q = Query({"x": 2.0}, {"u": 0.5}, ["x"], xy_twin.schema)
    out = llm.predict(q, xy_twin.retriever.search(q.state, q.action, xy_twin.schema))
    assert out.samples.shape == (1, 1)
    assert out.info["prompt_tokens"] > 0


def test_backend_down_names_the_url():
    url = f"http://127.0.0.1:{free_port()}/v1"
    backend = OpenAICompatBackend(url, model="gemma", timeout=2)
    with pytest.raises(BackendUnavailable) as info:
        backend.complete("1, 2,", max_tokens=2)
    assert url in str(info.value)


def test_no_vendor_fields_unless_asked():
    """A strict server (the OpenAI API) rejects unknown fields: repeat_penalty is sent only
    when the caller sets it. A real HTTP server records the request bodies."""
    import http.server
    import json
    import threading

    bodies: list[dict] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            reply = json.dumps({
                "id": "x", "object": "text_completion", "created": 0, "model": "m",
                "choices": [{"text": " 1", "index": 0, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
            }).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    try:
        OpenAICompatBackend(url, model="m").complete("1, 2,", max_tokens=2)
        OpenAICompatBackend(url, model="m", repeat_penalty=1.0).complete("1,", max_tokens=2)
    finally:
        httpd.shutdown()
    assert "repeat_penalty" not in bodies[0]
    assert bodies[1]["repeat_penalty"] == 1.0
