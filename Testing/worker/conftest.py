# Helpers live in worker_helpers.py: a uniquely named module, because several test folders have a
# conftest.py and `from conftest import ...` would pick whichever folder pytest collected first.
from worker_helpers import sample  # noqa: F401  (fixture)
