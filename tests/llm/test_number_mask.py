"""The number mask and the thread share, without a model: token ids from a toy tokenizer,
CPU samples scripted."""

import numpy as np
import pytest

from lmtwin.llm.llama_cpp import CpuShare, NumberMask

VOCAB = [str(d) for d in range(10)] + [" ", "-", " -", "\n", "x", "."]
IDS = {text: i for i, text in enumerate(VOCAB)}


class Toy:
    """Tokenizes each of VOCAB's texts to its one id (anything else to two ids)."""

    def tokenize(self, text: bytes, add_bos: bool = False, special: bool = False) -> list[int]:
        s = text.decode()
        return [IDS[s]] if s in IDS else [0, 0]


def ids(*texts: str) -> list[int]:
    return [IDS[t] for t in texts]


def texts(allowed: list[int]) -> set[str]:
    return {VOCAB[i] for i in allowed}


def test_mask_allows_exactly_count_integers_then_a_newline():
    mask = NumberMask(Toy(), count=2, max_digits=3)
    assert mask.supported
    digits = {str(d) for d in range(10)}
    assert texts(mask.allowed([])) == digits | {" ", "-", " -"}
    assert texts(mask.allowed(ids(" "))) == digits | {"-"}
    assert texts(mask.allowed(ids(" -"))) == digits
    # inside the first number: more digits or a separator, never the newline yet
    assert texts(mask.allowed(ids(" ", "4"))) == digits | {" ", " -"}
    # inside the last number: more digits, the newline, or a separator that ends the reply
    assert texts(mask.allowed(ids(" ", "4", " -", "1"))) == digits | {"\n", " ", " -"}
    assert texts(mask.allowed(ids(" ", "4", " -", "1", " "))) == {"\n"}
    assert texts(mask.allowed(ids(" ", "4", " -", "1", " -"))) == {"\n"}
    # at most 3 digits a number
    assert texts(mask.allowed(ids(" ", "4", " ", "1", "2", "3"))) == {"\n", " ", " -"}


def test_mask_sets_other_tokens_to_minus_infinity():
    mask = NumberMask(Toy(), count=1)
    prompt = np.array([9, 9, 9])
    logits = np.arange(len(VOCAB), dtype=np.float32)
    first = mask(prompt, logits)
    assert np.isneginf(first[IDS["x"]]) and np.isneginf(first[IDS["\n"]])
    assert first[IDS["7"]] == logits[IDS["7"]]
    # the next call sees the prompt and the reply's first token, "5": newline allowed
    after = mask(np.array([9, 9, 9, IDS["5"]]), logits)
    assert after[IDS["\n"]] == logits[IDS["\n"]] and np.isneginf(after[IDS["-"]])


def test_a_tokenizer_with_multi_token_digits_is_not_supported():
    class Split(Toy):
        def tokenize(self, text: bytes, add_bos: bool = False, special: bool = False):
            return [1, 2] if text == b"7" else super().tokenize(text)

    assert not NumberMask(Split(), count=1).supported


class Scripted(CpuShare):
    """CPU samples (machine busy seconds, own CPU seconds, wall seconds) from a list."""

    def __init__(self, samples: list[tuple[float, float, float]], **kw) -> None:
        self.samples = list(samples)
        super().__init__(cores=2, **kw)

    def _sample(self):  # type: ignore[no-untyped-def]
        return self.samples.pop(0)


@pytest.mark.parametrize(
    "busy,own,threads",
    [
        (2.0, 2.0, 2),  # only this process used the machine: both cores
        (2.0, 1.0, 1),  # another process used a core for the whole second: one left
        (0.15, 0.0, 2),  # a little background work leaves both
        (0.5, 0.0, 1),  # half a core of someone else is enough to stall a second thread
        (4.0, 0.0, 1),  # never below one
    ],
)
def test_threads_follow_the_cores_others_leave_idle(busy, own, threads):
    share = Scripted([(0.0, 0.0, 0.0), (busy, own, 1.0)])
    assert share.threads(2) == threads
    assert share.others == pytest.approx(max(0.0, busy - own))


def test_no_measure_keeps_the_maximum_and_a_quick_call_keeps_the_last_decision():
    assert Scripted([None, None]).threads(2) == 2  # not Linux
    share = Scripted([(0.0, 0.0, 0.0), (1.0, 0.0, 1.0), (1.0, 0.0, 1.05)])
    assert share.threads(2) == 1
    assert share.threads(2) == 1 and share.samples == []  # 0.05 s later: same window
    assert Scripted([(0.0, 0.0, 0.0), (0.0, 0.0, 1.0)]).threads(4) == 2  # at most the cores
