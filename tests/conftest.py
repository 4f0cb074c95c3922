"""Shared test settings."""

from hypothesis import settings

# Shared 2-core CI machines are noisy: no per-example deadline, a modest example count.
settings.register_profile("ci", deadline=None, max_examples=40, derandomize=True)
settings.load_profile("ci")
