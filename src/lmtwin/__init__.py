"""lmtwin: digital twins that learn in context and keep themselves up to date."""

from lmtwin.errors import (
    BackendError,
    BackendUnavailable,
    DependencyNotInstalled,
    InvalidValue,
    LmtwinError,
    NotReady,
    ParseError,
    SchemaError,
    StoreError,
    UnknownVariable,
)
from lmtwin.predictors import LLMPredictor, LocalRidge, NearestNeighbours, Persistence
from lmtwin.schema import Schema, Variable
from lmtwin.store import MemoryStore, SQLiteStore
from lmtwin.twin import Simulation, Twin
from lmtwin.types import Observation, Prediction, Transition

__version__ = "0.1.0"

__all__ = [
    "BackendError",
    "BackendUnavailable",
    "DependencyNotInstalled",
    "InvalidValue",
    "LLMPredictor",
    "LmtwinError",
    "LocalRidge",
    "MemoryStore",
    "NearestNeighbours",
    "NotReady",
    "Observation",
    "ParseError",
    "Persistence",
    "Prediction",
    "SQLiteStore",
    "Schema",
    "SchemaError",
    "Simulation",
    "StoreError",
    "Transition",
    "Twin",
    "UnknownVariable",
    "Variable",
]
