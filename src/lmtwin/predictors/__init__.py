"""Predictors: in-context learners and baselines behind one interface."""

from lmtwin.predictors.base import Forecast, Predictor, Query, check_predictor
from lmtwin.predictors.combine import Hedge
from lmtwin.predictors.llm import LLMPredictor
from lmtwin.predictors.parroting import Parroting
from lmtwin.predictors.simple import LocalRidge, NearestNeighbours, Persistence

__all__ = [
    "Forecast",
    "Hedge",
    "LLMPredictor",
    "LocalRidge",
    "NearestNeighbours",
    "Parroting",
    "Persistence",
    "Predictor",
    "Query",
    "check_predictor",
]
