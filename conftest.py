"""pytest configuration shared by tests/ and the doctests of refcomp/."""

import os

from hypothesis import HealthCheck, settings

# `python -m refcomp` would run the CLI at import: keep it out of doctest collection
collect_ignore = ["refcomp/__main__.py"]

settings.register_profile("ci", max_examples=int(os.environ.get("REFCOMP_HYPOTHESIS_EXAMPLES", 150)),
                          deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ci")
