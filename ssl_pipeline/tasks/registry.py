"""The method registry: `@register("name")` on a `Task` subclass makes `task=name` select it.

Adding a method = one new file in this package with a registered `Task` subclass (its modality declared once,
as a class attribute). Built-in methods are found by module name, so only the chosen one is imported.
"""
from __future__ import annotations

import importlib
import pkgutil

from ..errors import UserError

_METHODS: dict[str, type] = {}


def register(name: str):
    def add(cls):
        cls.name = name
        _METHODS[name] = cls
        return cls

    return add


def available() -> list[str]:
    """Registered methods plus the built-in modules of this package (not imported until chosen)."""
    here = importlib.import_module(__package__)
    builtin = [m.name for m in pkgutil.iter_modules(here.__path__) if m.name not in ("registry",)]
    return sorted(set(_METHODS) | set(builtin))


def method(name: str) -> type:
    """The Task class registered as `name` (imports the built-in module of that name on first use)."""
    if name not in _METHODS:
        try:
            importlib.import_module(f"{__package__}.{name}")
        except ModuleNotFoundError:
            pass
    if name not in _METHODS:
        raise UserError(f"task '{name}' is not a registered method; choose one of {available()}")
    return _METHODS[name]
