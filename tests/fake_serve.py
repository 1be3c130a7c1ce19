"""`python -m function serve` with the FAKE engine registered as `OCR_ENGINE=fake` (tests only):
`python -m tests.fake_serve --host 127.0.0.1 --port N`. See tests/fakes.py's ServedFakeEngine."""

import sys

from function.cli import main
from function.engines import ENGINES

ENGINES["fake"] = "tests.fakes:ServedFakeEngine"
sys.exit(main(["serve", *sys.argv[1:]]))
