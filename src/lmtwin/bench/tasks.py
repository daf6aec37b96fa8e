"""The literature's tasks (HDTwinGen protocol, see ``shared/BENCHMARK.md``): lung cancer
PKPD in three nested variants, Hare-Lynx (real data), a plankton microcosm and COVID-19
(covasim). Every task is offline and seeded; each split is a list of trajectories.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lmtwin.errors import DependencyNotInstalled, LmtwinError
from lmtwin.schema import Variable
from lmtwin.systems.cancer import CANCER_VARIABLES, Variant, simulate_patients
from lmtwin.types import Observation, Transition

TASKS = ("cancer", "cancer-chemo", "cancer-untreated", "hare-lynx", "plankton", "covid")
DATA_DIR = Path(__file__).resolve().parents[3].parent / "shared" / "data"

PLANKTON_P = (1.0, 3.0, 2.5, 1.5, 1.0, 1.0, 1.0, 1.0)
PLANKTON_X0 = (1.0, 1.5, 0.25)


class UnknownTask(LmtwinError):
    """A task name that the benchmark does not know."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"unknown task {name!r}; choose from {', '.join(TASKS)}")


class MissingData(LmtwinError):
    """A data file a task needs is missing (names the path and the option to pass)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        super().__init__(f"data file {path} not found; pass --data-dir with the folder "
                         "holding hare_lynx.csv and plankton_3dlv.csv")


@dataclass
class Trajectory:
    """``states`` (T + 1, n_states); ``actions`` (T, n_actions), n_actions may be 0."""

    states: np.ndarray
    actions: np.ndarray

    @property
    def steps(self) -> int:
        return len(self.states) - 1

    def head(self, steps: int) -> Trajectory:
        return Trajectory(self.states[: steps + 1], self.actions[:steps])


@dataclass
class Sizes:
    """How much data a run uses; ``quick`` and ``full`` are the two presets."""

    patients: tuple[int, int, int] = (1000, 1000, 1000)  # train, validation, test
    covid_trajectories: int = 24
    covid_population: int = 1_000_000
    test_trajectories: int | None = None  # None: the whole test split
    test_steps: int | None = None  # None: whole trajectories

    @classmethod
    def quick(cls) -> Sizes:
        return cls(patients=(60, 20, 20), covid_trajectories=3, covid_population=5_000)

    @classmethod
    def full(cls) -> Sizes:
        return cls()


@dataclass
class Task:
    """A task's variables and its train, validation and test trajectories."""

    name: str
    states: list[str]
    actions: list[str]
    variables: list[Variable]
    train: list[Trajectory]
    val: list[Trajectory]
    test: list[Trajectory]
    deterministic: bool = False  # the data do not depend on the seed
    mse_scale: float = 1.0  # the literature's reporting multiplier (1e6 for COVID)
    info: dict[str, Any] = field(default_factory=dict)

    def rows(self, traj: Trajectory) -> list[dict[str, float]]:
        """One dict per time: states, and the actions taken then (none on the last row)."""
        out = []
        for t in range(len(traj.states)):
            row = {n: float(x) for n, x in zip(self.states, traj.states[t], strict=True)}
            if t < len(traj.actions):
                acts = zip(self.actions, traj.actions[t], strict=True)
                row.update({n: float(x) for n, x in acts})
            out.append(row)
        return out

    def observations(self, trajs: Sequence[Trajectory], prefix: str) -> list[Observation]:
        return [Observation(f"{prefix}{i}", float(t), row)
                for i, traj in enumerate(trajs) for t, row in enumerate(self.rows(traj))]

    def transitions(self, trajs: Sequence[Trajectory], prefix: str = "train") -> list[Transition]:
        out = []
        for i, traj in enumerate(trajs):
            for t in range(traj.steps):
                out.append(Transition(
                    f"{prefix}{i}", float(t),
                    dict(zip(self.states, map(float, traj.states[t]), strict=True)),
                    dict(zip(self.actions, map(float, traj.actions[t]), strict=True)),
                    dict(zip(self.states, map(float, traj.states[t + 1]), strict=True))))
        return out

    def test_set(self, sizes: Sizes) -> list[Trajectory]:
        test = self.test[: sizes.test_trajectories]
        return [t.head(sizes.test_steps) if sizes.test_steps else t for t in test]


# --- lung cancer ---------------------------------------------------------------------
def _cancer(variant: Variant, seed: int, sizes: Sizes, **drift: Any) -> Task:
    names = {"cancer": (["v", "c"], ["ca", "ra"]), "cancer-chemo": (["v", "c"], ["ca"]),
             "cancer-untreated": (["v"], [])}[variant]
    states, actions = names

    def split(n: int, offset: int) -> list[Trajectory]:
        out = []
        for p in simulate_patients(n, seed=seed * 1000 + offset, variant=variant, **drift):
            full = {"v": p.v, "c": p.c, "ca": p.ca, "ra": p.ra}
            s = np.stack([full[n] for n in states], axis=1)
            a = (np.stack([full[n] for n in actions], axis=1) if actions
                 else np.zeros((len(p.ca), 0)))
            out.append(Trajectory(s, a))
        return out

    n_train, n_val, n_test = sizes.patients
    variables = [v for v in CANCER_VARIABLES if v.name in states + actions]
    return Task(variant, states, actions, variables, split(n_train, 1), split(n_val, 2),
                split(n_test, 3), info={"patients": list(sizes.patients)})


# --- Hare-Lynx -------------------------------------------------------------------------
def _read_csv(path: Path) -> tuple[list[str], np.ndarray]:
    if not path.exists():
        raise MissingData(path)
    with path.open(encoding="utf-8-sig", newline="") as f:
        rows = list(csv.reader(f, delimiter=";"))
    header = [h.strip().strip('"') for h in rows[0]]
    return header, np.array([[float(x) for x in r] for r in rows[1:] if r], dtype=float)


def _chronological(states: np.ndarray, sizes: tuple[int, int, int]) -> list[list[Trajectory]]:
    out, start = [], 0
    for n in sizes:
        s = states[start : start + n]
        out.append([Trajectory(s, np.zeros((len(s) - 1, 0)))])
        start += n
    return out


def hare_lynx(data_dir: Path = DATA_DIR) -> Task:
    header, data = _read_csv(data_dir / "hare_lynx.csv")
    cols = [header.index("Hare"), header.index("Lynx")]
    train, val, test = _chronological(data[:, cols], (63, 14, 14))
    variables = [Variable("hare", "state", "thousand pelts", "snowshoe hare pelts traded", lower=0),
                 Variable("lynx", "state", "thousand pelts", "Canada lynx pelts traded", lower=0)]
    return Task("hare-lynx", ["hare", "lynx"], [], variables, train, val, test, deterministic=True,
                info={"rows": len(data), "test_years": f"{int(data[77, 0])}-{int(data[-1, 0])}"})


# --- plankton ----------------------------------------------------------------------
def plankton_rhs(_t: float, x: np.ndarray, p: Sequence[float] = PLANKTON_P) -> np.ndarray:
    g, b, r = x
    h = 1.0 / (1.0 + p[7] * g)
    return np.array([(p[0] * (1 - g / p[1]) - p[2] * h * b - p[3] * h * r) * g,
                     (p[2] * h * g - p[4] * r - p[5]) * b,
                     (p[3] * h * g + p[4] * b - p[6]) * r])


def simulate_plankton(steps: int = 100) -> np.ndarray:
    """The three-species Lotka-Volterra microcosm at t = 0..steps (rows x (G, B, R))."""
    try:
        from scipy.integrate import solve_ivp
    except ImportError as exc:
        raise DependencyNotInstalled("scipy", "bench") from exc
    t = np.arange(steps + 1, dtype=float)
    sol = solve_ivp(plankton_rhs, (0, steps), PLANKTON_X0, t_eval=t, method="LSODA",
                    rtol=1e-10, atol=1e-12)
    return np.asarray(sol.y.T)


def plankton(data_dir: Path = DATA_DIR) -> Task:
    header, data = _read_csv(data_dir / "plankton_3dlv.csv")
    csv_states = data[:, [header.index("G"), header.index("B"), header.index("R")]]
    sim = simulate_plankton(len(csv_states) - 1)
    gap = float(np.max(np.abs(sim - csv_states)))
    train, val, test = _chronological(sim, (70, 15, 16))
    variables = [Variable("G", "state", "", "algae density", lower=0),
                 Variable("B", "state", "", "flagellate density", lower=0),
                 Variable("R", "state", "", "rotifer density", lower=0)]
    return Task("plankton", ["G", "B", "R"], [], variables, train, val, test, deterministic=True,
                info={"max_abs_gap_simulation_vs_csv": gap})


# --- COVID-19 ----------------------------------------------------------------------
def simulate_covid(n: int, seed: int, population: int = 1_000_000, days: int = 69,
                   drop: int = 10) -> list[Trajectory]:
    """covasim trajectories of (S, E-I, I, R+D) as fractions of the population."""
    try:
        import covasim as cv
    except ImportError as exc:
        raise DependencyNotInstalled("covasim", "bench") from exc
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        # the protocol's 10,000-100,000 initial infections per million, scaled
        infected = int(rng.integers(10_000, 100_000) * population / 1_000_000)
        sim = cv.Sim(pop_size=population, pop_type="random", use_waning=False, rescale=False,
                     pop_infected=infected, rand_seed=int(rng.integers(2**31 - 1)),
                     n_days=days, verbose=0)
        sim.run()
        r = sim.results
        s = np.stack([r["n_susceptible"].values,
                      r["n_exposed"].values - r["n_infectious"].values,
                      r["n_infectious"].values,
                      r["n_recovered"].values + r["n_dead"].values], axis=1) / population
        s = s[drop:]
        out.append(Trajectory(s, np.zeros((len(s) - 1, 0))))
    return out


def _covid_split(n: int, seed: int, population: int, cache: Path | None) -> list[Trajectory]:
    """``simulate_covid``, read from ``cache`` when a run with the same arguments saved it
    there (the simulations are seeded: the same arguments give the same trajectories);
    parts of one benchmark then simulate each split once."""
    if cache is None:
        return simulate_covid(n, seed, population)
    path = cache / f"covid-{n}-{seed}-{population}.npz"
    if path.exists():
        with np.load(path) as saved:
            return [Trajectory(s, np.zeros((len(s) - 1, 0))) for s in saved["states"]]
    out = simulate_covid(n, seed, population)
    cache.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, states=np.stack([t.states for t in out]))
    tmp.replace(path)  # whole or absent: a part reading it never sees half a file
    return out


def covid(seed: int, sizes: Sizes, cache: Path | None = None) -> Task:
    n = sizes.covid_trajectories
    pop = sizes.covid_population
    variables = [Variable("S", "state", "fraction", "susceptible share of the population"),
                 Variable("E", "state", "fraction", "exposed, not yet infectious share"),
                 Variable("I", "state", "fraction", "infectious share"),
                 Variable("R", "state", "fraction", "recovered or dead share")]
    return Task("covid", ["S", "E", "I", "R"], [], variables,
                _covid_split(n, seed * 1000 + 1, pop, cache),
                _covid_split(n, seed * 1000 + 2, pop, cache),
                _covid_split(n, seed * 1000 + 3, pop, cache), mse_scale=1e6,
                info={"trajectories_per_split": n, "population": pop})


def load_task(name: str, seed: int, sizes: Sizes | None = None,
              data_dir: Path = DATA_DIR, cache: Path | None = None) -> Task:
    """Build task ``name`` for ``seed``; raises UnknownTask, MissingData or
    DependencyNotInstalled with a message that says what to do. ``cache``: a folder where
    COVID's slow simulations are kept for the next run with the same sizes."""
    sizes = sizes or Sizes.full()
    if name in ("cancer", "cancer-chemo", "cancer-untreated"):
        return _cancer(name, seed, sizes)  # type: ignore[arg-type]
    if name == "hare-lynx":
        return hare_lynx(data_dir)
    if name == "plankton":
        return plankton(data_dir)
    if name == "covid":
        return covid(seed, sizes, cache)
    raise UnknownTask(name)
