"""The literature's baselines as ordinary lmtwin predictors.

Each answers ``predict(query, examples) -> Forecast`` and ignores the retrieved examples;
fitted ones also have ``fit(transitions)``. Sequence models (GRU, Transformer, the
LLMTime-style forecaster) keep the episode's past queries: the harness calls ``reset()``
at the start of each trajectory and then queries it in time order.

A baseline predicts only the targets it was fitted on; any other target (a variable that
appeared after the fit) is carried forward unchanged, and a missing input is replaced by
its training mean. That is what "keeping the old fit" means in the update scenarios.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from lmtwin.errors import DependencyNotInstalled, NotReady, ParseError
from lmtwin.llm.base import LLMBackend
from lmtwin.predictors.base import Forecast, Query
from lmtwin.types import Transition


def _torch() -> Any:
    try:
        import torch
    except ImportError as exc:
        raise DependencyNotInstalled("torch", "bench") from exc
    return torch


class Fitted:
    """Shared plumbing of the fitted baselines: inputs are the states then the actions
    seen in training, outputs the change of each state. Subclasses set ``name`` and
    implement ``_fit(X, Y)`` and ``_delta(X)`` on raw arrays."""

    name = "fitted"
    k = 0  # answers from its own fit, wants no retrieved examples

    def __init__(self) -> None:
        self.states_: list[str] = []
        self.actions_: list[str] = []
        self.mean_ = np.zeros(0)
        self.fit_seconds_ = 0.0

    def _design(self, transitions: Sequence[Transition]) -> tuple[np.ndarray, np.ndarray]:
        states = sorted({k for tr in transitions for k in tr.next_state})
        actions = sorted({k for tr in transitions for k in tr.action})
        rows = [tr for tr in transitions if all(tr.delta(s) is not None for s in states)
                and all(a in tr.action for a in actions)]
        if len(rows) < 2:
            raise NotReady(f"{self.name} needs complete transitions to fit, has {len(rows)}")
        self.states_, self.actions_ = states, actions
        X = np.array([[tr.state[s] for s in states] + [tr.action[a] for a in actions]
                      for tr in rows], dtype=float)
        Y = np.array([[tr.delta(s) for s in states] for tr in rows], dtype=float)
        self.mean_ = X.mean(axis=0)
        return X, Y

    def fit(self, transitions: Sequence[Transition]) -> Fitted:
        import time

        start = time.perf_counter()
        X, Y = self._design(transitions)
        self._fit(X, Y)
        self.fit_seconds_ = time.perf_counter() - start
        return self

    def _row(self, query: Query) -> np.ndarray:
        names = [*self.states_, *self.actions_]
        values = [query.state.get(n) if i < len(self.states_) else query.action.get(n)
                  for i, n in enumerate(names)]
        return np.array([self.mean_[i] if v is None else v for i, v in enumerate(values)])

    def predict(self, query: Query, examples: Sequence[Transition]) -> Forecast:
        if not self.states_:
            raise NotReady(f"{self.name} is not fitted")
        missing = [t for t in query.targets if t not in query.state]
        if missing:
            raise NotReady(f"{self.name} needs the current value of {missing}")
        delta = self._delta(self._row(query)[None, :])[0]
        if not np.all(np.isfinite(delta)):
            raise NotReady(f"{self.name}'s fitted model gave a non-finite change")
        out = [query.state[t] + (float(delta[self.states_.index(t)]) if t in self.states_ else 0.0)
               for t in query.targets]
        return Forecast(np.array([out]))

    def _fit(self, X: np.ndarray, Y: np.ndarray) -> None:
        raise NotImplementedError

    def _delta(self, X: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class Ridge(Fitted):
    """Global ridge regression of the state change on standardised inputs."""

    name = "ridge"

    def __init__(self, alpha: float = 1e-3) -> None:
        super().__init__()
        self.alpha = alpha

    def _fit(self, X: np.ndarray, Y: np.ndarray) -> None:
        self.mu_, sd = X.mean(axis=0), X.std(axis=0)
        self.sd_ = np.where(sd > 0, sd, 1.0)
        A = np.hstack([np.ones((len(X), 1)), (X - self.mu_) / self.sd_])
        reg = self.alpha * len(X) * np.eye(A.shape[1])
        reg[0, 0] = 0.0
        self.coef_ = np.linalg.solve(A.T @ A + reg, A.T @ Y)

    def _delta(self, X: np.ndarray) -> np.ndarray:
        return np.hstack([np.ones((len(X), 1)), (X - self.mu_) / self.sd_]) @ self.coef_


class KNN(Fitted):
    """Average change of the k nearest training transitions (standardised inputs)."""

    name = "knn"

    def __init__(self, neighbours: int = 5) -> None:
        super().__init__()
        self.neighbours = neighbours

    def _fit(self, X: np.ndarray, Y: np.ndarray) -> None:
        self.mu_, sd = X.mean(axis=0), X.std(axis=0)
        self.sd_ = np.where(sd > 0, sd, 1.0)
        self.Z_, self.Y_ = (X - self.mu_) / self.sd_, Y

    def _delta(self, X: np.ndarray) -> np.ndarray:
        z = (X - self.mu_) / self.sd_
        d = ((self.Z_[None, :, :] - z[:, None, :]) ** 2).sum(axis=-1)
        near = np.argsort(d, axis=1)[:, : self.neighbours]
        return np.asarray(self.Y_[near].mean(axis=1))


class SINDy(Fitted):
    """pysindy with the published settings: degree-3 polynomial library with interaction
    terms only, STLSQ(threshold, alpha=0.5); the change per step is the derivative
    (Euler, dt = 1), fitted on raw states as the literature does."""

    name = "sindy"

    def __init__(self, threshold: float = 0.02, alpha: float = 0.5) -> None:
        super().__init__()
        self.threshold = threshold
        self.alpha = alpha

    def _fit(self, X: np.ndarray, Y: np.ndarray) -> None:
        try:
            import pysindy as ps
        except ImportError as exc:
            raise DependencyNotInstalled("pysindy", "bench") from exc
        n = len(self.states_)
        self.model_ = ps.SINDy(
            feature_library=ps.PolynomialLibrary(degree=3, interaction_only=True),
            optimizer=ps.STLSQ(threshold=self.threshold, alpha=self.alpha))
        u = X[:, n:] if X.shape[1] > n else None
        # x_dot given per row, so rows of different trajectories never mix
        self.model_.fit(X[:, :n], t=1.0, x_dot=Y, u=u)

    def _delta(self, X: np.ndarray) -> np.ndarray:
        n = len(self.states_)
        u = X[:, n:] if X.shape[1] > n else None
        # a non-finite change is refused by ``predict`` (NotReady), so the harness counts
        # it as a failure instead of scoring a made-up zero
        return np.asarray(self.model_.predict(X[:, :n], u=u))


class DyNODE(Fitted):
    """DyNODE: an MLP (3 hidden layers of 128, tanh) predicting the z-scored state change
    from z-scored state and action, trained with Adam on mean squared error."""

    name = "dynode"

    def __init__(self, steps: int = 1500, lr: float = 1e-3, batch: int = 256,
                 seed: int = 0) -> None:
        super().__init__()
        self.steps, self.lr, self.batch, self.seed = steps, lr, batch, seed

    def _fit(self, X: np.ndarray, Y: np.ndarray) -> None:
        torch = _torch()
        torch.manual_seed(self.seed)
        nn = torch.nn
        self.xs_ = _Scaler(X)
        self.ys_ = _Scaler(Y)
        self.net_ = nn.Sequential(nn.Linear(X.shape[1], 128), nn.Tanh(), nn.Linear(128, 128),
                                  nn.Tanh(), nn.Linear(128, 128), nn.Tanh(),
                                  nn.Linear(128, Y.shape[1]))
        _train(self.net_, self.xs_(X), self.ys_(Y), self.steps, self.lr, self.batch, self.seed)

    def _delta(self, X: np.ndarray) -> np.ndarray:
        torch = _torch()
        with torch.no_grad():
            out = self.net_(torch.as_tensor(self.xs_(X), dtype=torch.float32)).numpy()
        return self.ys_.inverse(out)


class _Scaler:
    def __init__(self, X: np.ndarray) -> None:
        self.mu = X.mean(axis=0)
        sd = X.std(axis=0)
        self.sd = np.where(sd > 0, sd, 1.0)

    def __call__(self, X: np.ndarray) -> np.ndarray:
        return np.asarray((X - self.mu) / self.sd, dtype=np.float32)

    def inverse(self, Z: np.ndarray) -> np.ndarray:
        return np.asarray(Z * self.sd + self.mu, dtype=float)


def _train(net: Any, X: np.ndarray, Y: np.ndarray, steps: int, lr: float, batch: int,
           seed: int) -> list[float]:
    torch = _torch()
    Xt, Yt = torch.as_tensor(X), torch.as_tensor(np.asarray(Y, dtype=np.float32))
    optim = torch.optim.Adam(net.parameters(), lr=lr)
    rng = np.random.default_rng(seed)
    losses = []
    for _ in range(steps):
        idx = torch.as_tensor(rng.choice(len(Xt), size=min(batch, len(Xt)), replace=False))
        loss = torch.nn.functional.mse_loss(net(Xt[idx]), Yt[idx])
        optim.zero_grad()
        loss.backward()
        optim.step()
        losses.append(float(loss.detach()))
    return losses


class Sequence_(Fitted):
    """Shared plumbing of the windowed sequence models: the input is the last ``window``
    z-scored (state, action) rows of the episode, the output the z-scored next change.
    Short histories are padded by repeating the first row."""

    name = "sequence"
    window = 10

    def __init__(self, steps: int = 600, lr: float = 1e-3, batch: int = 64,
                 seed: int = 0) -> None:
        super().__init__()
        self.steps, self.lr, self.batch, self.seed = steps, lr, batch, seed
        self._history: list[np.ndarray] = []

    def reset(self) -> None:
        self._history = []

    def fit(self, transitions: Sequence[Transition]) -> Fitted:
        import time

        start = time.perf_counter()
        X, Y = self._design(transitions)
        self.xs_, self.ys_ = _Scaler(X), _Scaler(Y)
        Z, W = self.xs_(X), self.ys_(Y)
        # windows within each episode, in time order
        keys = [(tr.episode, tr.t) for tr in transitions
                if all(tr.delta(s) is not None for s in self.states_)
                and all(a in tr.action for a in self.actions_)]
        windows = np.empty((len(Z), self.window, Z.shape[1]), dtype=np.float32)
        order = sorted(range(len(keys)), key=lambda i: keys[i])
        episode, start_i = None, 0
        for pos, i in enumerate(order):
            if keys[i][0] != episode:
                episode, start_i = keys[i][0], pos
            past = [order[j] for j in range(max(start_i, pos - self.window + 1), pos + 1)]
            rows = Z[past]
            pad = np.repeat(rows[:1], self.window - len(rows), axis=0)
            windows[i] = np.concatenate([pad, rows])
        torch = _torch()
        torch.manual_seed(self.seed)
        self.net_ = self._network(Z.shape[1], W.shape[1])
        _train(self.net_, windows, W, self.steps, self.lr, self.batch, self.seed)
        self.fit_seconds_ = time.perf_counter() - start
        return self

    def predict(self, query: Query, examples: Sequence[Transition]) -> Forecast:
        if not self.states_:
            raise NotReady(f"{self.name} is not fitted")
        self._history.append(self.xs_(self._row(query)[None, :])[0])
        self._history = self._history[-self.window:]
        rows = np.stack(self._history)
        pad = np.repeat(rows[:1], self.window - len(rows), axis=0)
        torch = _torch()
        with torch.no_grad():
            z = self.net_(torch.as_tensor(np.concatenate([pad, rows])[None]))
        delta = self.ys_.inverse(z.numpy())[0]
        out = [query.state[t] + (float(delta[self.states_.index(t)]) if t in self.states_ else 0.0)
               for t in query.targets]
        return Forecast(np.array([out]))

    def _network(self, n_in: int, n_out: int) -> Any:
        raise NotImplementedError


class GRU(Sequence_):
    """GRU, 2 layers, hidden 250, input window 20, z-normalised inputs."""

    name = "gru"
    window = 20

    def _network(self, n_in: int, n_out: int) -> Any:
        nn = _torch().nn

        class Net(nn.Module):  # type: ignore[name-defined]
            def __init__(self) -> None:
                super().__init__()
                self.rnn = nn.GRU(n_in, 250, num_layers=2, batch_first=True)
                self.head = nn.Linear(250, n_out)

            def forward(self, x: Any) -> Any:
                out, _ = self.rnn(x)
                return self.head(out[:, -1])

        return Net()


class Transformer(Sequence_):
    """A small Transformer encoder over an input window of 10 steps (d_model 64,
    2 layers, 4 heads, learnt positions); the last position predicts the change."""

    name = "transformer"
    window = 10

    def _network(self, n_in: int, n_out: int) -> Any:
        torch = _torch()
        nn = torch.nn
        window = self.window

        class Net(nn.Module):  # type: ignore[name-defined]
            def __init__(self) -> None:
                super().__init__()
                self.embed = nn.Linear(n_in, 64)
                self.pos = nn.Parameter(torch.zeros(1, window, 64))
                layer = nn.TransformerEncoderLayer(64, 4, 128, dropout=0.0, batch_first=True)
                self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
                self.head = nn.Linear(64, n_out)

            def forward(self, x: Any) -> Any:
                return self.head(self.encoder(self.embed(x) + self.pos)[:, -1])

        return Net()


class LLMTime:
    """Zero-shot forecaster in the style of LLMTime: the episode so far, each value
    scaled (LLMTime's scaler: shift below the minimum by ``beta`` of the range, divide by
    the ``alpha`` quantile), written with ``precision`` digits and the decimal point
    dropped, one time step per group; the model continues the series. No retrieval, no
    training. Departure from LLMTime: the variables of a step are written side by side
    in one group and forecast in one call, not one univariate call each (cost).
    """

    name = "llmtime"
    k = 0  # no retrieval

    def __init__(self, backend: LLMBackend, precision: int = 3, alpha: float = 0.95,
                 beta: float = 0.3, max_history: int = 20) -> None:
        self.backend = backend
        self.precision = precision
        self.alpha, self.beta = alpha, beta
        self.max_history = max_history
        self._history: list[dict[str, float]] = []
        self.prompt_tokens_: list[int] = []

    def reset(self) -> None:
        self._history = []

    def fit(self, transitions: Sequence[Transition]) -> LLMTime:
        return self  # zero-shot

    def _scaler(self, values: np.ndarray) -> tuple[float, float]:
        lo, hi = float(values.min()), float(values.max())
        shift = lo - self.beta * (hi - lo)
        q = float(np.quantile(values - shift, self.alpha))
        return shift, q if q > 0 else 1.0

    def predict(self, query: Query, examples: Sequence[Transition]) -> Forecast:
        missing = [t for t in query.targets if t not in query.state]
        if missing:
            raise NotReady(f"llmtime needs the current value of {missing}")
        self._history.append(dict(query.state))
        self._history = self._history[-self.max_history:]
        cols = query.targets
        series = np.array([[h.get(c, query.state[c]) for c in cols] for h in self._history])
        if len(series) < 2:
            return Forecast(np.array([[query.state[t] for t in cols]]))
        scalers = [self._scaler(series[:, j]) for j in range(len(cols))]
        scale = 10 ** self.precision

        def code(x: float, j: int) -> str:
            shift, q = scalers[j]
            return str(max(0, round((x - shift) / q * scale)))

        prompt = " , ".join(" ".join(code(x, j) for j, x in enumerate(row)) for row in series)
        out = self.backend.complete(prompt + " ,", max_tokens=6 * len(cols) + 4,
                                    temperature=0.0, stop=[",", "\n"])
        self.prompt_tokens_.append(out.prompt_tokens)
        digits = re.findall(r"\d+", out.text)
        if len(digits) < len(cols):
            raise ParseError(f"llmtime expected {len(cols)} numbers", out.text)
        pred = [int(d) / scale * scalers[j][1] + scalers[j][0]
                for j, d in enumerate(digits[: len(cols)])]
        if not all(math.isfinite(p) for p in pred):
            raise ParseError("llmtime produced a non-finite value", out.text)
        return Forecast(np.array([pred]), {"prompt_tokens": out.prompt_tokens,
                                           "tokens": out.prompt_tokens + out.completion_tokens})
