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
import time
import warnings
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
    implement ``_fit(X, Y)`` and ``_delta(X)`` on raw arrays; ``extend(X, Y)`` (the
    online variant) refits on everything seen unless a subclass does it cheaper."""

    name = "fitted"
    k = 0  # answers from its own fit, wants no retrieved examples

    def __init__(self) -> None:
        self.states_: list[str] = []
        self.actions_: list[str] = []
        self.mean_ = np.zeros(0)
        self.fit_seconds_ = 0.0
        self.info_: dict[str, Any] = {}

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
        start = time.perf_counter()
        X, Y = self._design(transitions)
        self._fit(X, Y)
        self.fit_seconds_ = time.perf_counter() - start
        return self

    def fit_arrays(self, X: np.ndarray, Y: np.ndarray, states: Sequence[str],
                   actions: Sequence[str]) -> Fitted:
        """Fit on inputs X (states then actions, in the given order) and changes Y."""
        start = time.perf_counter()
        self.states_, self.actions_ = list(states), list(actions)
        self.mean_ = X.mean(axis=0)
        self._X, self._Y = X, Y
        self._fit(X, Y)
        self.fit_seconds_ = time.perf_counter() - start
        return self

    def extend(self, X: np.ndarray, Y: np.ndarray) -> None:
        """Learn from new transitions (the online variant): refit on everything."""
        self._X, self._Y = np.vstack([self._X, X]), np.vstack([self._Y, Y])
        self._fit(self._X, self._Y)

    def delta_batch(self, X: np.ndarray) -> np.ndarray:
        """Predicted changes (n, d) of n inputs (states then actions)."""
        return np.asarray(self._delta(X), dtype=float)

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
    """Global ridge regression of the state change on standardised inputs. Online, its
    normal equations grow with each new transition (the scaling stays the fitted one)."""

    name = "ridge"

    def __init__(self, alpha: float = 1e-3) -> None:
        super().__init__()
        self.alpha = alpha

    def _design_matrix(self, X: np.ndarray) -> np.ndarray:
        return np.hstack([np.ones((len(X), 1)), (X - self.mu_) / self.sd_])

    def _fit(self, X: np.ndarray, Y: np.ndarray) -> None:
        self.mu_, sd = X.mean(axis=0), X.std(axis=0)
        self.sd_ = np.where(sd > 0, sd, 1.0)
        A = self._design_matrix(X)
        self.n_, self.AtA_, self.AtY_ = len(X), A.T @ A, A.T @ Y
        self._solve()

    def _solve(self) -> None:
        reg = self.alpha * self.n_ * np.eye(len(self.AtA_))
        reg[0, 0] = 0.0
        self.coef_ = np.linalg.solve(self.AtA_ + reg, self.AtY_)

    def extend(self, X: np.ndarray, Y: np.ndarray) -> None:
        A = self._design_matrix(X)
        self.n_ += len(X)
        self.AtA_ += A.T @ A
        self.AtY_ += A.T @ Y
        self._solve()

    def _delta(self, X: np.ndarray) -> np.ndarray:
        return self._design_matrix(X) @ self.coef_


class KNN(Fitted):
    """Average change of the k nearest training transitions (standardised inputs, a
    k-d tree). Online, new transitions join the memory."""

    name = "knn"

    def __init__(self, neighbours: int = 5) -> None:
        super().__init__()
        self.neighbours = neighbours

    def _fit(self, X: np.ndarray, Y: np.ndarray) -> None:
        from scipy.spatial import cKDTree

        self.mu_, sd = X.mean(axis=0), X.std(axis=0)
        self.sd_ = np.where(sd > 0, sd, 1.0)
        self.Z_, self.Y_ = (X - self.mu_) / self.sd_, Y
        self.tree_ = cKDTree(self.Z_)

    def extend(self, X: np.ndarray, Y: np.ndarray) -> None:
        from scipy.spatial import cKDTree

        self.Z_ = np.vstack([self.Z_, (X - self.mu_) / self.sd_])
        self.Y_ = np.vstack([self.Y_, Y])
        self.tree_ = cKDTree(self.Z_)

    def _delta(self, X: np.ndarray) -> np.ndarray:
        k = min(self.neighbours, len(self.Z_))
        _, near = self.tree_.query((X - self.mu_) / self.sd_, k=k)
        near = np.asarray(near).reshape(len(X), k)
        return np.asarray(self.Y_[near].mean(axis=1))


class SINDy(Fitted):
    """pysindy with the published settings: degree-3 polynomial library with interaction
    terms only, STLSQ(threshold, alpha=0.5); the change per step is the derivative
    (Euler, dt = 1), fitted on raw states as the literature does. Online, it is refitted
    on everything seen every ``refit_every`` extensions (a fit takes seconds at the
    protocol's scale)."""

    name = "sindy"

    def __init__(self, threshold: float = 0.02, alpha: float = 0.5,
                 refit_every: int = 20) -> None:
        super().__init__()
        self.threshold = threshold
        self.alpha = alpha
        self.refit_every = refit_every
        self._pending = 0

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
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ill-conditioned raw libraries warn
            self.model_.fit(X[:, :n], t=1.0, x_dot=Y, u=u)

    def extend(self, X: np.ndarray, Y: np.ndarray) -> None:
        self._X, self._Y = np.vstack([self._X, X]), np.vstack([self._Y, Y])
        self._pending += 1
        if self._pending >= self.refit_every:
            self._pending = 0
            self._fit(self._X, self._Y)

    def _delta(self, X: np.ndarray) -> np.ndarray:
        n = len(self.states_)
        u = X[:, n:] if X.shape[1] > n else None
        # a non-finite change is refused by ``predict`` (NotReady), so the harness counts
        # it as a failure instead of scoring a made-up zero
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            return np.asarray(self.model_.predict(X[:, :n], u=u))


class DyNODE(Fitted):
    """DyNODE: an MLP (3 hidden layers of 128, tanh) predicting the z-scored state change
    from z-scored state and action, trained with Adam on mean squared error; with a
    validation split, to convergence: early stopping when the validation loss has not
    improved for ``patience`` checks, keeping the best weights."""

    name = "dynode"

    def __init__(self, steps: int = 1500, lr: float = 1e-3, batch: int = 256,
                 seed: int = 0, patience: int = 8, check_every: int = 200) -> None:
        super().__init__()
        self.steps, self.lr, self.batch, self.seed = steps, lr, batch, seed
        self.patience, self.check_every = patience, check_every
        self.val_: tuple[np.ndarray, np.ndarray] | None = None

    def _fit(self, X: np.ndarray, Y: np.ndarray) -> None:
        torch = _torch()
        torch.manual_seed(self.seed)
        nn = torch.nn
        self.xs_ = _Scaler(X)
        self.ys_ = _Scaler(Y)
        self.net_ = nn.Sequential(nn.Linear(X.shape[1], 128), nn.Tanh(), nn.Linear(128, 128),
                                  nn.Tanh(), nn.Linear(128, 128), nn.Tanh(),
                                  nn.Linear(128, Y.shape[1]))
        val = None if self.val_ is None else (self.xs_(self.val_[0]), self.ys_(self.val_[1]))
        self.info_ = _train(self.net_, self.xs_(X), self.ys_(Y), self.steps, self.lr,
                            self.batch, self.seed, val, self.patience, self.check_every)

    def _delta(self, X: np.ndarray) -> np.ndarray:
        torch = _torch()
        with torch.inference_mode():
            out = self.net_(torch.as_tensor(self.xs_(X), dtype=torch.float32)).numpy()
        return self.ys_.inverse(out)


class _Scaler:
    def __init__(self, X: np.ndarray) -> None:
        axes = tuple(range(X.ndim - 1))
        self.mu = X.mean(axis=axes)
        sd = X.std(axis=axes)
        self.sd = np.where(sd > 0, sd, 1.0)

    def __call__(self, X: np.ndarray) -> np.ndarray:
        return np.asarray((X - self.mu) / self.sd, dtype=np.float32)

    def inverse(self, Z: np.ndarray) -> np.ndarray:
        return np.asarray(Z * self.sd + self.mu, dtype=float)


def _train(net: Any, X: np.ndarray, Y: np.ndarray, steps: int, lr: float, batch: int,
           seed: int, val: tuple[np.ndarray, np.ndarray] | None = None, patience: int = 8,
           check_every: int = 200, max_val: int = 1024, min_delta: float = 0.01
           ) -> dict[str, Any]:
    """Adam on mean squared error for at most ``steps`` steps, minibatches drawn pass by
    pass (every row once per pass, in a seeded order). With ``val``, to convergence:
    every ``check_every`` steps the validation loss; a check improves on the best when
    it is at least ``min_delta`` (relative) below it; the learning rate halves after
    ``patience // 2`` checks without improvement (``ReduceLROnPlateau``) and training
    stops after ``patience`` of them, keeping the best weights. Returns what happened
    (steps run, best step, whether the validation loss stopped it, the loss per check)."""
    import copy

    torch = _torch()
    Xt, Yt = torch.as_tensor(X), torch.as_tensor(np.asarray(Y, dtype=np.float32))
    optim = torch.optim.Adam(net.parameters(), lr=lr)
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optim, factor=0.5, patience=max(0, patience // 2 - 1), threshold=min_delta,
        threshold_mode="rel")
    rng = np.random.default_rng(seed)
    if val is not None:
        pick = rng.choice(len(val[0]), size=min(max_val, len(val[0])), replace=False)
        Xv = torch.as_tensor(val[0][pick])
        Yv = torch.as_tensor(np.asarray(val[1][pick], dtype=np.float32))
    best, best_step, best_state, bad = float("inf"), 0, None, 0
    converged = False
    step = 0
    curve: list[float] = []
    size = min(batch, len(Xt))
    order, at = rng.permutation(len(Xt)), 0
    for step in range(1, steps + 1):
        if at + size > len(order):  # the next pass
            order, at = rng.permutation(len(Xt)), 0
        idx = torch.as_tensor(order[at: at + size])
        at += size
        loss = torch.nn.functional.mse_loss(net(Xt[idx]), Yt[idx])
        optim.zero_grad()
        loss.backward()
        optim.step()
        if val is not None and step % check_every == 0:
            with torch.inference_mode():
                v = float(torch.nn.functional.mse_loss(net(Xv), Yv))
            curve.append(v)
            plateau.step(v)
            if v < best * (1 - min_delta):
                best, best_step, bad = v, step, 0
                best_state = copy.deepcopy(net.state_dict())
            else:
                bad += 1
                if bad >= patience:
                    converged = True
                    break
    if best_state is not None:
        net.load_state_dict(best_state)
    return {"steps_run": step, "best_step": best_step, "val_loss": best,
            "early_stopped": converged, "curve": curve}


def windows(S: np.ndarray, A: np.ndarray, window: int) -> np.ndarray:
    """Input windows (n, T, window, F) of rows (state, action) ending at each step t < T
    of each trajectory; a history shorter than the window repeats its first row."""
    R = np.concatenate([S[:, : A.shape[1]], A], axis=2)
    T = R.shape[1]
    idx = np.clip(np.arange(T)[:, None] - window + 1 + np.arange(window)[None, :], 0, None)
    return R[:, idx]


def last_window(S: np.ndarray, A: np.ndarray, window: int) -> np.ndarray:
    """The window (n, window, F) ending now (``A`` holds the current action)."""
    t = A.shape[1] - 1
    R = np.concatenate([S[:, : t + 1], A], axis=2)
    idx = np.clip(t - window + 1 + np.arange(window), 0, None)
    return R[:, idx]


class Sequence_(Fitted):
    """Shared plumbing of the windowed sequence models: the input is the last ``window``
    z-scored (state, action) rows of the episode, the output the z-scored next change.
    Short histories are padded by repeating the first row. ``fit_sequences`` trains on
    trajectory arrays with early stopping on a validation split."""

    name = "sequence"
    window = 10

    def __init__(self, steps: int = 600, lr: float = 1e-3, batch: int = 64,
                 seed: int = 0, patience: int = 8, check_every: int = 200) -> None:
        super().__init__()
        self.steps, self.lr, self.batch, self.seed = steps, lr, batch, seed
        self.patience, self.check_every = patience, check_every
        self._history: list[np.ndarray] = []

    def reset(self) -> None:
        self._history = []

    def fit(self, transitions: Sequence[Transition]) -> Fitted:
        start = time.perf_counter()
        X, Y = self._design(transitions)
        self.xs_, self.ys_ = _Scaler(X), _Scaler(Y)
        Z, W = self.xs_(X), self.ys_(Y)
        # windows within each episode, in time order
        keys = [(tr.episode, tr.t) for tr in transitions
                if all(tr.delta(s) is not None for s in self.states_)
                and all(a in tr.action for a in self.actions_)]
        wins = np.empty((len(Z), self.window, Z.shape[1]), dtype=np.float32)
        order = sorted(range(len(keys)), key=lambda i: keys[i])
        episode, start_i = None, 0
        for pos, i in enumerate(order):
            if keys[i][0] != episode:
                episode, start_i = keys[i][0], pos
            past = [order[j] for j in range(max(start_i, pos - self.window + 1), pos + 1)]
            rows = Z[past]
            pad = np.repeat(rows[:1], self.window - len(rows), axis=0)
            wins[i] = np.concatenate([pad, rows])
        torch = _torch()
        torch.manual_seed(self.seed)
        self.net_ = self._network(Z.shape[1], W.shape[1])
        self.info_ = _train(self.net_, wins, W, self.steps, self.lr, self.batch, self.seed)
        self.fit_seconds_ = time.perf_counter() - start
        return self

    def fit_sequences(self, S: np.ndarray, A: np.ndarray, S_val: np.ndarray,
                      A_val: np.ndarray, states: Sequence[str],
                      actions: Sequence[str]) -> Sequence_:
        """Train on trajectory arrays (n, T + 1, d) / (n, T, a), stopping early on the
        validation trajectories."""
        start = time.perf_counter()
        self.states_, self.actions_ = list(states), list(actions)
        X = np.concatenate([S[:, :-1], A], axis=2).reshape(-1, S.shape[2] + A.shape[2])
        Y = (S[:, 1:] - S[:, :-1]).reshape(-1, S.shape[2])
        self.mean_ = X.mean(axis=0)
        self.xs_, self.ys_ = _Scaler(X), _Scaler(Y)

        def data(S_: np.ndarray, A_: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            w = self.xs_(windows(S_, A_, self.window))
            y = self.ys_((S_[:, 1:] - S_[:, :-1]).reshape(-1, S_.shape[2]))
            return w.reshape(-1, self.window, w.shape[-1]), y

        torch = _torch()
        torch.manual_seed(self.seed)
        self.net_ = self._network(X.shape[1], Y.shape[1])
        self.info_ = _train(self.net_, *data(S, A), self.steps, self.lr, self.batch,
                            self.seed, data(S_val, A_val), self.patience, self.check_every)
        self.fit_seconds_ = time.perf_counter() - start
        return self

    def delta_windows(self, wins: np.ndarray) -> np.ndarray:
        """Predicted changes (n, d) from raw windows (n, window, F)."""
        torch = _torch()
        with torch.inference_mode():
            z = self.net_(torch.as_tensor(self.xs_(wins)))
        return self.ys_.inverse(z.numpy())

    def predict(self, query: Query, examples: Sequence[Transition]) -> Forecast:
        if not self.states_:
            raise NotReady(f"{self.name} is not fitted")
        self._history.append(self._row(query))
        self._history = self._history[-self.window:]
        rows = np.stack(self._history)
        pad = np.repeat(rows[:1], self.window - len(rows), axis=0)
        delta = self.delta_windows(np.concatenate([pad, rows])[None])[0]
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


class ContextParroting:
    """Context parroting (Zhang and Gilpin, 2025): find the stored stretch of history
    whose last ``window`` rows (z-scored states and actions) are most like the recent
    context, and copy what followed it; here the change that followed (patients differ
    in scale), averaged over the ``matches`` best matches (1: pure parroting).

    As a ``Predictor`` it keeps the episode's context (``reset`` starts a new one; the
    context itself is searched too, as in-context parroting does); ``fit`` stores the
    history. The batch path (``fit_arrays``, ``delta_batch``) searches one window per
    trajectory at a time step; online, ``extend`` adds each revealed stretch.
    """

    name = "parroting"
    k = 0

    def __init__(self, window: int = 3, matches: int = 1) -> None:
        self.window, self.matches = window, matches
        self.states_: list[str] = []
        self.actions_: list[str] = []
        self.fit_seconds_ = 0.0
        self.info_: dict[str, Any] = {}
        self._history: list[np.ndarray] = []
        self._keys: list[np.ndarray] = []
        self._deltas: list[np.ndarray] = []
        self._tree: Any = None

    def reset(self) -> None:
        self._history = []

    # --- storage ---------------------------------------------------------------------
    def _store(self, keys: np.ndarray, deltas: np.ndarray) -> None:
        self._keys.append(np.asarray(keys, dtype=float).reshape(len(keys), -1))
        self._deltas.append(np.asarray(deltas, dtype=float))
        self._tree = None

    def _search(self, keys: np.ndarray) -> np.ndarray:
        from scipy.spatial import cKDTree

        if self._tree is None:
            self._K, self._D = np.vstack(self._keys), np.vstack(self._deltas)
            self._keys, self._deltas = [self._K], [self._D]
            self._tree = cKDTree(self._K)
        m = min(self.matches, len(self._K))
        _, near = self._tree.query(keys.reshape(len(keys), -1), k=m)
        return np.asarray(self._D[np.asarray(near).reshape(len(keys), m)].mean(axis=1))

    def fit_arrays(self, S: np.ndarray, A: np.ndarray, states: Sequence[str],
                   actions: Sequence[str]) -> ContextParroting:
        """Store every window of the trajectories (n, T + 1, d) / (n, T, a)."""
        start = time.perf_counter()
        self.states_, self.actions_ = list(states), list(actions)
        R = np.concatenate([S[:, :-1], A], axis=2).reshape(-1, S.shape[2] + A.shape[2])
        self.scaler_ = _Scaler(R)
        self._keys, self._deltas, self._tree = [], [], None
        self._store(self.scaler_(windows(S, A, self.window)).reshape(-1, self.window,
                                                                       R.shape[1]),
                    (S[:, 1:] - S[:, :-1]).reshape(-1, S.shape[2]))
        self.fit_seconds_ = time.perf_counter() - start
        return self

    def delta_batch_history(self, S: np.ndarray, A: np.ndarray) -> np.ndarray:
        """The copied change (n, d) for each trajectory's context (history to now)."""
        return self._search(self.scaler_(last_window(S, A, self.window)))

    def extend_history(self, S: np.ndarray, A: np.ndarray) -> None:
        """Store the stretch just revealed: the window ending at the previous step and
        the change that followed it (``S`` holds the new row)."""
        t = S.shape[1] - 2
        win = last_window(S[:, : t + 1], A[:, : t + 1], self.window)
        self._store(self.scaler_(win), S[:, t + 1] - S[:, t])

    # --- the Predictor protocol -------------------------------------------------------
    def fit(self, transitions: Sequence[Transition]) -> ContextParroting:
        by_episode: dict[str, list[Transition]] = {}
        for tr in transitions:
            by_episode.setdefault(tr.episode, []).append(tr)
        self.states_ = sorted({k for tr in transitions for k in tr.next_state})
        self.actions_ = sorted({k for tr in transitions for k in tr.action})
        rows, deltas, wins = [], [], []
        for trs in by_episode.values():
            trs = sorted(trs, key=lambda tr: tr.t)
            R = np.array([[tr.state.get(s, np.nan) for s in self.states_]
                          + [tr.action.get(a, np.nan) for a in self.actions_] for tr in trs])
            D = np.array([[tr.next_state.get(s, np.nan) - tr.state.get(s, np.nan)
                           for s in self.states_] for tr in trs])
            rows.append(R)
            deltas.append(D)
        allrows = np.vstack(rows)
        ok = np.isfinite(allrows).all(axis=1)
        if ok.sum() < 1:
            raise NotReady("parroting needs complete transitions to store")
        self.scaler_ = _Scaler(allrows[ok])
        self._keys, self._deltas, self._tree = [], [], None
        for R, D in zip(rows, deltas, strict=True):
            idx = np.clip(np.arange(len(R))[:, None] - self.window + 1
                          + np.arange(self.window)[None, :], 0, None)
            wins.append(self.scaler_(R[idx]))
            good = np.isfinite(wins[-1]).all(axis=(1, 2)) & np.isfinite(D).all(axis=1)
            if good.any():
                self._store(wins[-1][good], D[good])
        return self

    def predict(self, query: Query, examples: Sequence[Transition]) -> Forecast:
        if not self._keys:
            raise NotReady("parroting has no stored history")
        missing = [t for t in query.targets if t not in query.state]
        if missing:
            raise NotReady(f"parroting needs the current value of {missing}")
        row = np.array([query.state.get(s, np.nan) for s in self.states_]
                       + [query.action.get(a, np.nan) for a in self.actions_])
        if not np.isfinite(row).all():
            raise NotReady("parroting needs every variable it stored")
        if self._history:
            # the context so far is history too: store its last stretch and what followed
            prev = np.stack(self._history[-self.window:])
            pad = np.repeat(prev[:1], self.window - len(prev), axis=0)
            n = len(self.states_)
            self._store(self.scaler_(np.concatenate([pad, prev]))[None],
                        (row[:n] - prev[-1, :n])[None])
        self._history = [*self._history, row][-self.window:]
        ctx = np.stack(self._history)
        pad = np.repeat(ctx[:1], self.window - len(ctx), axis=0)
        delta = self._search(self.scaler_(np.concatenate([pad, ctx]))[None])[0]
        out = [query.state[t] + (float(delta[self.states_.index(t)]) if t in self.states_
                                 else 0.0) for t in query.targets]
        return Forecast(np.array([out]))


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
        out, tokens = self._forecast(series)
        return Forecast(out[None, :], {"prompt_tokens": self.prompt_tokens_[-1]
                                       if tokens else 0, "tokens": tokens})

    def forecast_series(self, series: np.ndarray) -> np.ndarray:
        """The next row of ``series`` (time x variables, the last ``max_history`` rows
        used): one call, as ``predict`` makes after as many queries."""
        return self._forecast(np.asarray(series, dtype=float)[-self.max_history:])[0]

    def _forecast(self, series: np.ndarray) -> tuple[np.ndarray, int]:
        if len(series) < 2:
            return series[-1].copy(), 0
        scalers = [self._scaler(series[:, j]) for j in range(series.shape[1])]
        scale = 10 ** self.precision

        def code(x: float, j: int) -> str:
            shift, q = scalers[j]
            return str(max(0, round((x - shift) / q * scale)))

        prompt = " , ".join(" ".join(code(x, j) for j, x in enumerate(row)) for row in series)
        out = self.backend.complete(prompt + " ,", max_tokens=6 * series.shape[1] + 4,
                                    temperature=0.0, stop=[",", "\n"])
        self.prompt_tokens_.append(out.prompt_tokens)
        digits = re.findall(r"\d+", out.text)
        if len(digits) < series.shape[1]:
            raise ParseError(f"llmtime expected {series.shape[1]} numbers", out.text)
        pred = [int(d) / scale * scalers[j][1] + scalers[j][0]
                for j, d in enumerate(digits[: series.shape[1]])]
        if not all(math.isfinite(p) for p in pred):
            raise ParseError("llmtime produced a non-finite value", out.text)
        return np.array(pred), out.prompt_tokens + out.completion_tokens


# --- batched methods for the harness (one call per time step for every trajectory) ----
class FittedMethod:
    """A fitted baseline in the harness; ``online``: extended with each revealed step."""

    def __init__(self, model: Fitted, name: str, online: bool = False) -> None:
        self.model, self.online, self.outputs = model, online, [name]

    def predict(self, S: np.ndarray, A: np.ndarray) -> dict[str, Any]:
        from lmtwin.bench.harness import Out

        X = np.concatenate([S[:, -1], A[:, -1]], axis=1)
        with np.errstate(all="ignore"):
            delta = self.model.delta_batch(X)
        bad = ~np.isfinite(delta).all(axis=1)
        mean = np.where(bad[:, None], S[:, -1], S[:, -1] + np.nan_to_num(delta))
        return {self.outputs[0]: Out(mean, failed=bad)}

    def learn(self, S: np.ndarray, A: np.ndarray) -> None:
        if self.online:
            t = S.shape[1] - 2
            self.model.extend(np.concatenate([S[:, t], A[:, t]], axis=1), S[:, t + 1] - S[:, t])


class SequenceMethod:
    """A windowed sequence model (GRU, Transformer) in the harness; never online."""

    online = False

    def __init__(self, model: Sequence_, name: str) -> None:
        self.model, self.outputs = model, [name]

    def predict(self, S: np.ndarray, A: np.ndarray) -> dict[str, Any]:
        from lmtwin.bench.harness import Out

        delta = self.model.delta_windows(last_window(S, A, self.model.window))
        bad = ~np.isfinite(delta).all(axis=1)
        mean = np.where(bad[:, None], S[:, -1], S[:, -1] + np.nan_to_num(delta))
        return {self.outputs[0]: Out(mean, failed=bad)}

    def learn(self, S: np.ndarray, A: np.ndarray) -> None:
        pass


class ParrotMethod:
    """Context parroting in the harness; ``online``: each revealed stretch is stored."""

    def __init__(self, model: ContextParroting, name: str, online: bool = False) -> None:
        self.model, self.online, self.outputs = model, online, [name]

    def predict(self, S: np.ndarray, A: np.ndarray) -> dict[str, Any]:
        from lmtwin.bench.harness import Out

        return {self.outputs[0]: Out(S[:, -1] + self.model.delta_batch_history(S, A))}

    def learn(self, S: np.ndarray, A: np.ndarray) -> None:
        if self.online:
            self.model.extend_history(S, A[:, : S.shape[1] - 1])
