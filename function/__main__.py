"""`python -m function`: the command line (see function/cli.py)."""

import sys

from function.cli import main

sys.exit(main())
