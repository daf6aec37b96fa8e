"""One conformance test per protocol, over every implementation the library ships:
``check_predictor``, ``check_store`` and ``check_backend`` (Gymnasium's ``check_env``
idea). Implementations that need a real model or server run them for real."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from lmtwin import LLMPredictor, LocalRidge, Persistence, Twin, Variable
from lmtwin.llm import LlamaCppBackend, OpenAICompatBackend, check_backend
from lmtwin.llm.scripted import ScriptedBackend
from lmtwin.predictors import NearestNeighbours, Parroting, Predictor, check_predictor
from lmtwin.store import MemoryStore, SQLiteStore, Store, check_store
from lmtwin.types import Query
from tests.conftest import feed_linear
from tests.service.test_postgres import pg_url  # noqa: F401 (a real PostgreSQL server fixture)

PREDICTORS: dict[str, Callable[[Any], Predictor]] = {
    "persistence": lambda r: Persistence(),
    "numeric": lambda r: LocalRidge(),
    "knn": lambda r: NearestNeighbours(),
    "parroting": lambda r: Parroting(),
    "llm-scripted": lambda r: LLMPredictor(ScriptedBackend([" 0.1"])),
    "llm-embedded": lambda r: LLMPredictor(r.getfixturevalue("gemma")),
}


@pytest.mark.parametrize("name", list(PREDICTORS))
def test_every_predictor_conforms(name: str, request: pytest.FixtureRequest) -> None:
    if name == "llm-embedded":
        request.applymarker(pytest.mark.model)
    twin = Twin("c", [Variable("x"), Variable("u", "action")],
                predictors=[Persistence(), LocalRidge()])
    feed_linear(twin, 40)
    query = Query({"x": 2.0}, {"u": 0.5}, ["x"], twin.schema)
    predictor = PREDICTORS[name](request)
    examples = twin.retriever.search(query.state, query.action, twin.schema, k=predictor.k)
    check_predictor(predictor, examples, query)


def _postgres(request: pytest.FixtureRequest) -> Store:
    from lmtwin.store.postgres import PostgresStore

    return PostgresStore(request.getfixturevalue("pg_url"))


STORES: dict[str, Callable[[pytest.FixtureRequest, Path], Store]] = {
    "memory": lambda request, tmp: MemoryStore(),
    "sqlite-file": lambda request, tmp: SQLiteStore(tmp / "s.db"),
    "postgresql-server": lambda request, tmp: _postgres(request),
}


@pytest.mark.parametrize("name", list(STORES))
def test_every_store_conforms(name: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    store = STORES[name](request, tmp_path)
    check_store(store)
    store.close()


@pytest.mark.model
@pytest.mark.parametrize("name", ["scripted", "embedded", "openai-compatible server"])
def test_every_backend_conforms(name: str, request: pytest.FixtureRequest) -> None:
    if name == "scripted":
        check_backend(ScriptedBackend([" 5"]))
    elif name == "embedded":
        check_backend(request.getfixturevalue("gemma"))
        assert isinstance(request.getfixturevalue("gemma"), LlamaCppBackend)
    else:
        url = request.getfixturevalue("llama_server")
        check_backend(OpenAICompatBackend(url, model="gemma", repeat_penalty=1.0))
