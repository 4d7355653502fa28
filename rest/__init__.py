"""rest: ResT and its baselines (GRPO, Dr.GRPO, DAPO) for tool-using LLMs on Ray + vLLM + FSDP2.

The Ray actors live in the repository's top-level `workers/` folder (the design card's layout) but import as
`rest.workers`, so installing rest never puts a bare top-level package called `workers` into site-packages:
setup.py installs the folder as `rest.workers`, and in a source checkout (an editable install, or the repository
on PYTHONPATH, as Ray jobs and workers see it) this file gives the folder that name on first import of `rest`.
"""

import importlib.util as _util
import sys as _sys
from pathlib import Path as _Path


def _name_the_workers_folder() -> None:
    here = _Path(__file__).resolve().parent
    folder = here.parent / "workers"
    if "rest.workers" in _sys.modules or (here / "workers").is_dir() or not (folder / "__init__.py").is_file():
        return  # already imported, or an installed copy with rest/workers inside the package
    spec = _util.spec_from_file_location("rest.workers", folder / "__init__.py", submodule_search_locations=[str(folder)])
    module = _util.module_from_spec(spec)
    _sys.modules["rest.workers"] = module
    spec.loader.exec_module(module)
    globals()["workers"] = module


_name_the_workers_folder()
