"""Writing examples into a completion prompt and reading numbers back out."""

from lmtwin.prompt.parse import parse_numbers, reply_grammar
from lmtwin.prompt.render import Layout, render

__all__ = ["Layout", "parse_numbers", "render", "reply_grammar"]
