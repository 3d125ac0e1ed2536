"""Settings shared by every test."""

import os

# An export builds the dbt models after its load by default; across the hundreds of exports the tests run,
# that would add minutes on CI's two cores without testing anything new. The dbt tests
# (tests/warehouse/test_models.py, test_postgres.py) turn it back on explicitly.
os.environ.setdefault("SOURCES__CONCORD__DBT", "false")
