"""Request and response bodies (pydantic), which also make the OpenAPI document."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt

Number = StrictFloat | StrictInt
Name = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")]
Episode = Annotated[str, Field(min_length=1, max_length=128)]
Values = Annotated[dict[Name, Number], Field(max_length=256)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NoiseIn(Strict):
    sensor: Annotated[float, Field(gt=0, description="spread of a reading (variable's unit)")]
    process: Annotated[float, Field(gt=0, description="spread of unmodelled change rate per "
                                                      "unit time")]


class VariableIn(Strict):
    name: Name
    role: Literal["state", "action", "context"] = "state"
    unit: Annotated[str, Field(max_length=64)] = ""
    description: Annotated[str, Field(max_length=1000)] = ""
    lower: Number | None = None
    upper: Number | None = None
    noise: NoiseIn | None = Field(None, description="declared sensor noise: turns on the "
                                                    "Kalman filter for this variable")


class VariablePatch(Strict):
    role: Literal["state", "action", "context"] | None = None
    unit: Annotated[str, Field(max_length=64)] | None = None
    description: Annotated[str, Field(max_length=1000)] | None = None
    lower: Number | None = None
    upper: Number | None = None
    noise: NoiseIn | None = None
    clear_noise: StrictBool = False


class TwinIn(Strict):
    name: Name
    variables: Annotated[list[VariableIn], Field(max_length=256)] = []
    strict: StrictBool = True
    level: Annotated[float, Field(gt=0, lt=1)] = 0.9
    description: Annotated[str, Field(max_length=2000)] = ""
    knowledge: Annotated[list[Annotated[str, Field(max_length=2000)]], Field(max_length=100)] = []


class TwinPatch(Strict):
    strict: StrictBool | None = None
    level: Annotated[float, Field(gt=0, lt=1)] | None = None
    description: Annotated[str, Field(max_length=2000)] | None = None


class TwinOut(BaseModel):
    name: str
    created_at: float
    description: str
    strict: bool
    level: float
    schema_version: int
    variables: list[dict[str, Any]]
    noise: dict[str, dict[str, float]]
    predictors: list[str]
    encoder: str = Field(description="RawEncoder, or SetEncoder once tuned")
    tunings: list[dict[str, float]] = Field(description="background tunings of the encoder "
                                            "(at, transitions, seconds, first/last loss)")
    tuner_error: str | None = None
    episodes: list[str]
    n_notes: int
    subscribers: int
    assimilation: dict[str, Any] | None = Field(None, description=(
        "with a declared sensor noise: the readings whose Kalman prior fell back from the "
        "twin's forecast to a random walk, counted per cause (NotReady, BackendError, "
        "ParseError, ...), and the last reason"))


class KnowledgeIn(Strict):
    text: Annotated[str, Field(min_length=1, max_length=2000)]


class NoteOut(BaseModel):
    at: float
    text: str


class ObservationIn(Strict):
    episode: Episode = "default"
    t: Number | None = Field(None, description="time; default: the episode's last time + 1")
    values: Values


class BatchIn(Strict):
    observations: Annotated[list[ObservationIn], Field(min_length=1)]


class IngestOut(BaseModel):
    stored: int
    last_t: dict[str, float]
    replayed: bool


class ObservationOut(BaseModel):
    episode: str
    t: float
    values: dict[str, float]


class PredictIn(Strict):
    state: Values | None = Field(None, description="default: the episode's latest state")
    action: Values = {}
    episode: Episode | None = Field(None, description="the episode whose latest state is the "
                                                      "default, and whose next observation "
                                                      "scores the prediction")
    score: StrictBool | None = Field(None, description=(
        "score the prediction against the episode's next observation (the twin learns from "
        "it): needs the write scope; default: true for keys that may write, else false. "
        "false: a look-ahead that the twin does not score or learn from"))


class PredictionOut(BaseModel):
    variables: list[str]
    mean: dict[str, float]
    lower: dict[str, float]
    upper: dict[str, float]
    level: float
    by_predictor: dict[str, dict[str, float]]
    weights: dict[str, float]
    n_samples: int
    provenance: dict[str, Any]
    scored: bool = Field(description="whether the twin will score this prediction against "
                                     "the episode's next observation")


class SimulateIn(Strict):
    state: Values | None = None
    plan: Annotated[list[Values], Field(min_length=1, max_length=1000)]
    n_paths: Annotated[int, Field(ge=1, le=200)] = 20
    horizon: Annotated[int, Field(ge=1)] | None = None
    episode: Episode = "default"


class SimulationOut(BaseModel):
    variables: list[str]
    n_paths: int
    horizon: int
    level: float
    mean: dict[str, list[float]]
    lower: dict[str, list[float]]
    median: dict[str, list[float]]
    upper: dict[str, list[float]]


class KeyIn(Strict):
    name: Annotated[str, Field(min_length=1, max_length=100)]
    twins: Annotated[list[Annotated[str, Field(max_length=64)]], Field(min_length=1)] = Field(
        description="twin names, or ['*'] for every twin")
    scopes: Annotated[list[Literal["read", "write"]], Field(min_length=1)]


class KeyOut(BaseModel):
    id: str
    name: str
    twins: list[str]
    scopes: list[str]
    created_at: float
    revoked_at: float | None = None
    key: str | None = Field(None, description="the secret, returned once at creation")


class ErrorOut(BaseModel):
    error: str
    detail: Any
