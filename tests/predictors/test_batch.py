"""retrieve_batch: the examples of many queries in one gather, answering as the per-call
path does (with padding, missing values, and the exact k-d tree on a large store)."""

import numpy as np
import pytest

from lmtwin import LocalRidge, NearestNeighbours, Persistence, Twin, Variable
from lmtwin.predictors.batch import retrieve_batch
from lmtwin.predictors.simple import features
from lmtwin.retrieval import Retriever
from lmtwin.types import Query, Transition

VARIABLES = [Variable("x"), Variable("y"), Variable("u", "action", lower=0, upper=2)]


def _retriever(n, holes=0, index="auto", faiss_above=5_000):
    """x' = 0.9 x + u, y' = y - 0.1 x; ``holes`` transitions lack y's next value."""
    rng = np.random.default_rng(0)
    r = Retriever(index=index, faiss_above=faiss_above)
    for i in range(n):
        x, y, u = rng.normal(), rng.normal(), float(rng.choice([0.0, 1.0]))
        nxt = {"x": 0.9 * x + u + 0.01 * rng.normal()}
        if i >= holes:
            nxt["y"] = y - 0.1 * x
        r.add(Transition("e", i, {"x": x, "y": y}, {"u": u}, nxt))
    return r


def _check(r, n_queries=30):
    twin = Twin("b", variables=VARIABLES)
    rng = np.random.default_rng(1)
    xs, ys, us = rng.normal(size=n_queries), rng.normal(size=n_queries), rng.choice(
        [0.0, 1.0], n_queries)
    q0 = Query({"x": 0.0, "y": 0.0}, {"u": 0.0}, ["x", "y"])
    names = features(q0)
    cols = {"s:x": xs, "s:y": ys, "a:u": us}
    batch = retrieve_batch(r, twin.schema, cols, names, ["x", "y"],
                           np.column_stack([xs, ys]), 64)
    for p in (Persistence(), LocalRidge(), NearestNeighbours()):
        mean, ok = p.predict_batch(batch)
        for i in range(n_queries):
            q = Query({"x": xs[i], "y": ys[i]}, {"u": us[i]}, ["x", "y"])
            ex = r.search(q.state, q.action, twin.schema, k=p.k) if p.k else []
            try:
                want = p.predict(q, ex).mean
            except Exception:
                assert not ok[i]
                continue
            assert ok[i]
            np.testing.assert_allclose(mean[i], want, rtol=1e-7, atol=1e-10)
    return batch


def test_complete_store_gives_a_complete_batch():
    batch = _check(_retriever(300))
    assert batch.complete and batch.usable().all()


def test_missing_values_and_padding_are_masked():
    batch = _check(_retriever(40, holes=10))  # fewer than 64 examples: padded with -1
    assert not batch.complete
    assert not batch.usable().all()
    assert np.isnan(batch.ex_inputs[:, -1]).all()  # the padding


@pytest.mark.parametrize("index", ["auto", "faiss"])
def test_large_store_with_the_kdtree_or_faiss(index):
    r = _retriever(3000, index=index, faiss_above=1000)
    _check(r)
    kind = next(iter(r.indexes.values()))
    assert ("KDTreeIndex" if index == "auto" else "FaissIndex") in kind


def test_kdtree_index_makes_the_batch_answer_as_exact_search():
    tree, exact = _retriever(3000, index="kdtree"), _retriever(3000, index="exact")
    twin = Twin("b", variables=VARIABLES)
    rng = np.random.default_rng(2)
    xs, ys, us = rng.normal(size=200), rng.normal(size=200), rng.choice([0.0, 1.0], 200)
    names = features(Query({"x": 0.0, "y": 0.0}, {"u": 0.0}, ["x", "y"]))
    args = ({"s:x": xs, "s:y": ys, "a:u": us}, names, ["x", "y"], np.column_stack([xs, ys]), 64)
    a = LocalRidge().predict_batch(retrieve_batch(tree, twin.schema, *args))[0]
    b = LocalRidge().predict_batch(retrieve_batch(exact, twin.schema, *args))[0]
    np.testing.assert_allclose(a, b, rtol=1e-9)
