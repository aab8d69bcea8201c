"""The method registry: `@register("name", config=Section)` on a `Task` subclass makes `task=name` select it.

Adding a method = one new file in this package with a registered `Task` subclass: its modality is declared once,
as a class attribute, and its own hyperparameters as a dataclass (`config=`), which becomes the config section
`pretrain.<name>` (e.g. `pretrain.byol.momentum_start`). Modules whose name starts with `_` hold shared helpers,
not methods.
"""
from __future__ import annotations

import importlib
import pkgutil

from ..errors import UserError

_METHODS: dict[str, type] = {}


def register(name: str, config: type | None = None):
    """`config`: a dataclass of the method's own keys (fields with defaults and a `# comment` each)."""

    def add(cls):
        cls.name = name
        cls.config_section = config
        _METHODS[name] = cls
        return cls

    return add


def _builtin_modules() -> list[str]:
    here = importlib.import_module(__package__)
    return [m.name for m in pkgutil.iter_modules(here.__path__) if m.name != "registry" and not m.name.startswith("_")]


def available() -> list[str]:
    """Registered methods plus the built-in modules of this package (not imported until chosen)."""
    return sorted(set(_METHODS) | set(_builtin_modules()))


def method(name: str) -> type:
    """The Task class registered as `name` (imports the built-in module of that name on first use)."""
    if name not in _METHODS:
        try:
            importlib.import_module(f"{__package__}.{name}")
        except ModuleNotFoundError as err:
            if err.name != f"{__package__}.{name}":  # the method exists but a dependency of it is missing
                raise
    if name not in _METHODS:
        raise UserError(f"task '{name}' is not a registered method; choose one of {available()}")
    return _METHODS[name]


def config_sections() -> dict[str, type]:
    """{method name: its config dataclass} for every method, built-in ones imported (the schema lists them all)."""
    for name in _builtin_modules():
        method(name)
    return {name: cls.config_section for name, cls in sorted(_METHODS.items()) if cls.config_section is not None}
