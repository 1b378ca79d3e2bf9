# Helpers live in engine_helpers.py: a uniquely named module, because several test folders have a
# conftest.py and `from conftest import ...` would pick whichever folder pytest collected first.
from engine_helpers import config  # noqa: F401  (fixture)
