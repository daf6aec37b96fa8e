"""The OpenAI-compatible backend against a real llama.cpp server on 127.0.0.1."""

import socket
import subprocess
import sys
import time

import httpx
import pytest

from conftest import feed_linear
from lmtwin import LLMPredictor
from lmtwin.errors import BackendUnavailable
from lmtwin.llm import OpenAICompatBackend, check_backend, model_path
from lmtwin.predictors import Query

pytestmark = pytest.mark.model


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server():
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(model_path("gemma3-270m")),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--n_threads",
            "2",
            "--logits_all",
            "false",
            "--model_alias",
            "gemma",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            if httpx.get(f"{url}/models", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("llama_cpp.server did not start in 120 s")
    yield url
    proc.terminate()
    proc.wait(timeout=30)


def test_server_backend_conforms(server):
    check_backend(OpenAICompatBackend(server, model="gemma"))


def test_llm_predictor_through_server(server, xy_twin):
    feed_linear(xy_twin, 30)
    llm = LLMPredictor(
        OpenAICompatBackend(server, model="gemma", supports_grammar=True), grammar=True
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
