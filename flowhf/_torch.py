"""torch, imported on its first use.

The objectives and the target name torch at import but call it only inside functions; through
this module the config (which lists the objectives) loads without torch, so
`flowhf train --help-config` and `flowhf reproduce --dry-run` answer before torch would load.
After the first attribute read the real module's names are copied in, so later reads are plain
attribute lookups.
"""

from __future__ import annotations

import importlib
import types


class _OnFirstUse(types.ModuleType):
    def __getattr__(self, name: str):
        module = importlib.import_module(self.__name__)
        self.__dict__.update(module.__dict__)
        return getattr(module, name)


torch = _OnFirstUse("torch")
