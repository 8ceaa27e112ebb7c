"""``python -m pytest_smtp_sink [options] ADDRESS BACKLOG``: the smtp-sink command line."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
