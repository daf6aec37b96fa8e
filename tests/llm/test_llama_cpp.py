"""The real embedded models, end to end (behaviour and shape, not exact numbers)."""

import re

import numpy as np
import pytest

from lmtwin import LLMPredictor, LocalRidge, Persistence, Twin, Variable
from lmtwin.errors import BackendUnavailable
from lmtwin.llm import LlamaCppBackend, check_backend
from lmtwin.predictors import Query, check_predictor
from tests.conftest import feed_linear

pytestmark = pytest.mark.model


def test_gemma_backend_conforms(gemma):
    check_backend(gemma)


def test_numbers_constrain_a_reply_to_that_many_integers(gemma):
    # the prompt invites 3 numbers; the reply must hold exactly 2, and a short
    # max_tokens is raised to what 2 numbers need
    prompt = "# x y -> dx dy dz\n1 2 -> 3 4 5\n2 3 -> 4 5 6\n3 4 ->"
    out = gemma.complete(prompt, numbers=2, max_tokens=2)
    # (a space or sign after the last number ends the reply where the model went on)
    assert re.fullmatch(r" ?-?\d{1,6} -?\d{1,6}( -?)?", out.text), out.text
    assert 1 <= gemma.threads <= gemma.max_threads


def test_smollm2_backend_conforms():
    backend = LlamaCppBackend("smollm2-135m", n_threads=2)
    check_backend(backend)
    assert backend.supports_numbers  # its digits are single tokens too
    backend.close()


def test_missing_gguf_is_unavailable(tmp_path):
    with pytest.raises(BackendUnavailable, match=r"no-such\.gguf"):
        LlamaCppBackend(str(tmp_path / "no-such.gguf"))


@pytest.mark.parametrize("grammar", [False, True])
def test_llm_predictor_on_real_model(gemma, xy_twin, grammar):
    feed_linear(xy_twin, 40)
    llm = LLMPredictor(gemma, grammar=grammar, n_samples=2)
    q = Query({"x": 2.0}, {"u": 0.5}, ["x"], xy_twin.schema)
    examples = xy_twin.retriever.search(q.state, q.action, xy_twin.schema)
    check_predictor(llm, examples, q)
    out = llm.predict(q, examples)
    assert out.samples.shape == (2, 1)
    assert out.info["prompt_tokens"] < 400
    assert abs(out.mean[0] - 2.3) < 5.0  # a sane number, not an exact one


def test_twin_end_to_end_with_real_model(gemma):
    twin = Twin(
        "real",
        variables=[Variable("x", "state", "m", "position"), Variable("u", "action", "m", "push")],
        predictors=[Persistence(), LocalRidge(), LLMPredictor(gemma)],
    )
    twin.add_knowledge("the push u moves x by its full amount")
    x = 1.0
    for t in range(30):
        u = 0.5 if t % 3 == 0 else 0.0
        twin.observe({"x": x, "u": u}, episode="e", t=float(t))
        p = twin.predict({"x": x}, {"u": u}, episode="e")
        x = 0.9 * x + u
    assert "llm" in p.by_predictor, p.provenance["skipped"]
    assert set(p.weights) == {"persistence", "numeric", "llm"}
    assert np.isfinite(p.mean["x"])
    assert p.provenance["info"]["llm"]["prompt_tokens"] > 0
    assert any("llm" in s.by_predictor for s in twin.scores_)


def test_the_service_shared_backend_passes_the_number_mask_through(gemma):
    # the service serialises twins' calls through LockedBackend: the predictor must see
    # the mask there too, or the service decodes freely and retries
    from lmtwin.service.core import LockedBackend

    shared = LockedBackend(gemma)
    assert shared.supports_numbers
    out = shared.complete("# x y -> dx dy dz\n1 2 -> 3 4 5\n2 3 -> 4 5 6\n3 4 ->",
                          numbers=2, max_tokens=2)
    assert re.fullmatch(r" ?-?\d{1,6} -?\d{1,6}( -?)?", out.text), out.text
