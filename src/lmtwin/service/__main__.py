"""``python -m lmtwin.service [options]`` is ``lmtwin serve [options]``."""

import sys

from lmtwin.cli import app

app(["serve", *sys.argv[1:]])
