"""Language-model backends behind one small protocol."""

from lmtwin.llm.base import Completion, LLMBackend, check_backend
from lmtwin.llm.llama_cpp import LlamaCppBackend, model_path
from lmtwin.llm.openai_compat import OpenAICompatBackend
from lmtwin.llm.scripted import ScriptedBackend

__all__ = [
    "Completion",
    "LLMBackend",
    "LlamaCppBackend",
    "OpenAICompatBackend",
    "ScriptedBackend",
    "check_backend",
    "model_path",
]
