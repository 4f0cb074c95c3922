"""Errors meant for users.

Every message names the file and, where there is one, the record, and says how to fix it.
The CLI prints these without a traceback.
"""

from __future__ import annotations


class FabricdetError(Exception):
    """Base class of the errors a user can act on."""


class DataError(FabricdetError, ValueError):
    """A dataset, annotation or prediction file is missing, unreadable or inconsistent."""
