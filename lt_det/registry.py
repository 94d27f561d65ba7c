"""A registry of classes by short names, for config values that pick a part (a loss, a calibration).

A plain dict rather than detectron2's ``Registry``: that one names entries by ``__name__`` only,
and the config values here are short snake_case method names.
"""
from typing import Callable, Dict, List, Type


class NameRegistry:
    """``name -> class``; an unknown name fails with the registered ones.

    Args:
        kind, plural: what is registered, for messages ("loss", "losses").
        config_key: the config key whose value is a name here (named in the error).
        where: when the name is needed ("the model is built"), for the import hint.
    """

    def __init__(self, kind: str, plural: str, config_key: str, where: str):
        self.kind, self.plural, self.config_key, self.where = kind, plural, config_key, where
        self._classes: Dict[str, Type] = {}

    def register(self, name: str) -> Callable[[Type], Type]:
        """Class decorator registering a class under ``name``."""

        def deco(cls):
            if name in self._classes and self._classes[name] is not cls:
                raise KeyError(f"A {self.kind} named '{name}' is already registered ({self._classes[name].__qualname__})")
            self._classes[name] = cls
            return cls

        return deco

    def names(self) -> List[str]:
        """Sorted names of every registered class."""
        return sorted(self._classes)

    def get(self, name: str, also_valid: str = "") -> Type:
        """The class registered as ``name``; ``also_valid`` lists values the caller accepts besides
        the registered names (shown first in the error)."""
        if name not in self._classes:
            valid = ", ".join(([also_valid] if also_valid else []) + self.names())
            raise KeyError(
                f"Unknown {self.kind} '{name}' ({self.config_key}). Registered {self.plural}: {valid}. A {self.kind} "
                f"defined in another project must be imported (importing registers it) before {self.where}."
            )
        return self._classes[name]
