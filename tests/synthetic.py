"""The synthetic page generator, kept importable from here for the tests (it lives in bench/quality)."""

from bench.quality.synthetic import *  # noqa: F403
from bench.quality.synthetic import __all__  # noqa: F401
