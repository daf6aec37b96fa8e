import numpy as np
import pytest

from lmtwin import Variable
from lmtwin.retrieval import (
    ExactIndex,
    FaissIndex,
    KDTreeIndex,
    RawEncoder,
    Retriever,
    make_index,
)
from lmtwin.schema import Schema
from lmtwin.types import Transition


def transitions(n=200, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        x, u = rng.normal(), rng.choice([0.0, 1.0])
        out.append(Transition("e", i, {"x": x}, {"u": u}, {"x": 0.5 * x + u}))
    return out


SCHEMA = Schema([Variable("x"), Variable("u", "action")])


@pytest.mark.parametrize("index_cls", [ExactIndex, KDTreeIndex, FaissIndex])
def test_indexes_agree(index_cls):
    rng = np.random.default_rng(1)
    data = rng.normal(size=(500, 8)).astype(np.float32)
    idx = index_cls(8)
    idx.add(data[:300])
    idx.add(data[300:])
    q = data[42] + 1e-4
    got = idx.search(q, 5)
    want = np.argsort(((data - q) ** 2).sum(axis=1))[:5]
    assert list(got) == list(want)
    assert len(idx) == 500


def test_make_index_picks_a_tree_or_faiss_for_large_stores():
    assert isinstance(make_index(10, dim=4), ExactIndex)
    assert isinstance(make_index(10**6, dim=4), KDTreeIndex)  # few dimensions: exact tree
    assert isinstance(make_index(10**6, dim=32), FaissIndex)
    assert isinstance(make_index(10**6), FaissIndex)  # dimension unknown


def test_kdtree_searches_vectors_added_after_its_build_exactly():
    rng = np.random.default_rng(3)
    data = rng.normal(size=(3000, 3)).astype(np.float32)
    idx = KDTreeIndex(3)
    exact = ExactIndex(3)
    idx.add(data[:2000])
    exact.add(data[:2000])
    q = rng.normal(size=(5, 3))
    idx.search_batch(q, 10)  # builds the tree over the first 2,000
    for lo in range(2000, 3000, 250):  # a tail small enough to scan, then a rebuild
        idx.add(data[lo : lo + 250])
        exact.add(data[lo : lo + 250])
        for queries in (q[:1], q):
            d_tree, i_tree = idx.search_batch(queries, 10)
            d_exact, i_exact = exact.search_batch(queries, 10)
            assert i_tree.tolist() == i_exact.tolist()
            np.testing.assert_allclose(d_tree, d_exact, rtol=1e-4, atol=1e-6)
    assert idx.search_batch(q, 5000)[1].shape == (5, 3000)  # k beyond the store: all


def test_retriever_finds_neighbours_and_survives_new_variables():
    r = Retriever(RawEncoder(), k=8)
    for tr in transitions():
        r.add(tr)
    near = r.search({"x": 0.3}, {"u": 1.0}, SCHEMA)
    assert len(near) == 8
    assert all(t.action["u"] == 1.0 for t in near)
    # nearest last
    assert abs(near[-1].state["x"] - 0.3) <= abs(near[0].state["x"] - 0.3)
    schema = Schema([Variable("x"), Variable("u", "action"), Variable("z")])
    r.add(Transition("e", 999, {"x": 0.3, "z": 5.0}, {"u": 1.0}, {"x": 1.15}))
    near = r.search({"x": 0.3, "z": 5.0}, {"u": 1.0}, schema)
    assert near[-1].t == 999


@pytest.mark.slow
def test_set_encoder_tunes_and_embeds_unseen_variable():
    from lmtwin.retrieval.set_encoder import SetEncoder

    enc = SetEncoder(seed=0)
    data = transitions(300)
    losses = enc.tune(data, SCHEMA, steps=60, batch=64)
    assert len(losses) == 60 and np.mean(losses[-10:]) < np.mean(losses[:10])
    v1 = enc.encode([({"x": 0.1}, {"u": 1.0})])
    assert v1.shape == (1, 32) and np.isfinite(v1).all()
    # a variable the encoder never saw: embedded through its name, no retraining
    schema = Schema(
        [
            Variable("x"),
            Variable("u", "action"),
            Variable("temp", "context", "C", "room temperature"),
        ]
    )
    enc.fit(data, schema)
    v2 = enc.encode([({"x": 0.1, "temp": 21.0}, {"u": 1.0})])
    assert v2.shape == (1, 32) and np.isfinite(v2).all()
    assert not np.allclose(v1, v2)
    # tuned retrieval groups similar outcomes: neighbours' changes are closer than random
    r = Retriever(enc, k=10)
    for tr in data:
        r.add(tr)
    near = r.search({"x": 0.2}, {"u": 1.0}, SCHEMA)
    d_near = np.std([t.delta("x") for t in near])
    d_all = np.std([t.delta("x") for t in data])
    assert d_near < d_all


def test_faiss_absence_is_explicit(monkeypatch):
    import sys

    from lmtwin.errors import DependencyNotInstalled
    from lmtwin.retrieval.index import FaissMissingWarning

    monkeypatch.setitem(sys.modules, "faiss", None)  # as if not installed
    with pytest.warns(FaissMissingWarning, match="lmtwin\\[faiss\\]"):
        assert isinstance(make_index(10**6), ExactIndex)
    with pytest.raises(DependencyNotInstalled):
        make_index(10, kind="faiss")
    assert isinstance(make_index(10**6, kind="exact"), ExactIndex)


@pytest.mark.parametrize("kind", ["exact", "kdtree", "faiss"])
def test_batch_search_matches_one_search_per_query(kind):
    r = Retriever(RawEncoder(), k=8, index=kind)
    for tr in transitions(300):
        r.add(tr)
    rng = np.random.default_rng(2)
    xs, us = rng.normal(size=50), rng.choice([0.0, 1.0], 50)
    ids = r.search_batch({"s:x": xs, "a:u": us}, 50, SCHEMA, 8)
    assert ids.shape == (50, 8)
    for i in range(50):
        one = r.search({"x": xs[i]}, {"u": us[i]}, SCHEMA)
        assert [r.transitions.index(t) for t in reversed(one)] == ids[i].tolist()


@pytest.mark.parametrize("kind", ["auto", "faiss"])
def test_large_groups_move_to_a_tree_or_faiss_ivf(kind):
    data = transitions(3000, seed=4)
    exact = Retriever(RawEncoder(), index="exact")
    large = Retriever(RawEncoder(), index=kind, faiss_above=1000)
    for tr in data:
        exact.add(tr)
        large.add(tr)
    rng = np.random.default_rng(5)
    cols = {"s:x": rng.normal(size=200), "a:u": rng.choice([0.0, 1.0], 200)}
    want = exact.search_batch(cols, 200, SCHEMA, 32)
    got = large.search_batch(cols, 200, SCHEMA, 32)
    recall = np.mean([len(set(a) & set(b)) / 32 for a, b in zip(want, got, strict=True)])
    if kind == "auto":  # 2-d embeddings: the exact k-d tree
        assert "KDTreeIndex" in next(iter(large.indexes.values()))
        assert recall == 1.0
    else:
        assert "FaissIndex" in next(iter(large.indexes.values()))
        assert recall > 0.95
