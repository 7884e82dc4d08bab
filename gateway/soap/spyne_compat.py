"""Spyne 2.14 on Python 3.12 and later: the bridge for its vendored ``six``, installed before Spyne is imported.

Spyne 2.14 (its last release, 2022) vendors six 1.14, whose importer of
``spyne.util.six.moves`` speaks only the ``find_module``/``load_module`` protocol. Python
3.12 stopped calling it, so ``import spyne`` fails with "No module named
'spyne.util.six.moves'" (arskom/spyne issues 700, 708 and 711); 3.10 and 3.11 still call
it, with an ImportWarning. :func:`install` gives that importer the ``find_spec``,
``create_module`` and ``exec_module`` methods six 1.16 added, the moment Spyne's six has
run and before anything imports from ``moves``: on every version the import then takes
the modern path, without the warning.

Python 3.13 also removed ``cgi``, which Spyne's SOAP protocol and WSGI server import: the
``legacy-cgi`` distribution, a dependency on 3.13 and later (setup.cfg), puts it back.

Nothing here changes Spyne's behaviour. Remove this module, its call in spyne_types.py
and the ``legacy-cgi`` dependency the day a Spyne release ships six 1.16 or later.
"""
from __future__ import annotations

import importlib.util
import sys
from collections.abc import Sequence
from importlib.abc import MetaPathFinder
from importlib.machinery import ModuleSpec, PathFinder, SourceFileLoader
from types import ModuleType
from typing import Any

SIX = "spyne.util.six"
"""Spyne's vendored copy of six."""


def install() -> None:
    """Bridge Spyne's six on this interpreter; call it before the first ``import spyne`` (repeating it is harmless)."""
    if SIX in sys.modules:
        _bridge(sys.modules[SIX])
    elif not any(isinstance(finder, _SixFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _SixFinder())


def _find_spec(importer: Any, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
               ) -> ModuleSpec | None:
    """The spec of a ``moves`` module the importer knows, with the importer as its loader (as in six 1.16)."""
    if fullname in importer.known_modules:
        return importlib.util.spec_from_loader(fullname, importer)
    return None


def _create_module(importer: Any, spec: ModuleSpec) -> ModuleType:
    """The ``moves`` module, made by the importer's own ``load_module``."""
    module: ModuleType = importer.load_module(spec.name)
    return module


def _exec_module(importer: Any, module: ModuleType) -> None:
    """Nothing left to run: ``create_module`` handed out a finished module."""


def _bridge(six: ModuleType) -> None:
    importer = six._SixMetaPathImporter
    importer.find_spec = _find_spec
    importer.create_module = _create_module
    importer.exec_module = _exec_module


class _BridgingLoader(SourceFileLoader):
    """Loads Spyne's six from its file as usual, then bridges its importer."""

    def exec_module(self, module: ModuleType) -> None:
        """Run six, then add the methods its importer lacks."""
        super().exec_module(module)
        _bridge(module)


class _SixFinder(MetaPathFinder):
    """Finds Spyne's six where the path finder would, and hands it to a ``_BridgingLoader``."""

    def find_spec(self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
                  ) -> ModuleSpec | None:
        """The spec of Spyne's six with the bridging loader; None for any other module."""
        if fullname != SIX:
            return None
        found = PathFinder.find_spec(fullname, path)
        if found is None or not isinstance(found.loader, SourceFileLoader) or found.origin is None:
            return None
        return importlib.util.spec_from_file_location(fullname, found.origin,
                                                      loader=_BridgingLoader(fullname, found.origin))
