"""The model catalog: one definition of every served model (see models.py)."""

from catalog.models import CATALOG, ModelEntry, Preprocessing, Published, UnknownModelError, get

__all__ = ["CATALOG", "ModelEntry", "Preprocessing", "Published", "UnknownModelError", "get"]
