"""Choosing the in-context examples: encoders, vector indexes and the retriever."""

from lmtwin.retrieval.encoders import Encoder, RawEncoder
from lmtwin.retrieval.index import ExactIndex, FaissIndex, KDTreeIndex, VectorIndex, make_index
from lmtwin.retrieval.retriever import Retriever

__all__ = [
    "Encoder",
    "ExactIndex",
    "FaissIndex",
    "KDTreeIndex",
    "RawEncoder",
    "Retriever",
    "VectorIndex",
    "make_index",
]
