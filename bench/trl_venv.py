"""TRL's own virtual environment for the RL-step benchmark, made once and cached.

~/.cache/rest/venvs/trl-<version> (or $REST_VENV_CACHE/trl-<version>) is created without pip from our base
interpreter; a .pth file adds our venv's site-packages after its own, so torch, transformers, accelerate, ... are
the identical builds; our pip installs trl==<version> and `datasets` into it with every package of our venv
pinned as a constraint, so nothing of ours is upgraded or shadowed. Our venv stays untouched.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

TRL_VERSION = "1.16.0"


def venv_cache() -> Path:
    return Path(os.environ.get("REST_VENV_CACHE") or Path.home() / ".cache" / "rest" / "venvs").expanduser()


def _run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    print("  $ " + " ".join(str(c) for c in cmd), flush=True)
    return subprocess.run([str(c) for c in cmd], check=True, **kwargs)


def _trl_version_in(python: Path) -> str | None:
    probe = subprocess.run([str(python), "-c", "import trl, datasets; print(trl.__version__)"],
                           capture_output=True, text=True)
    return probe.stdout.strip() if probe.returncode == 0 else None


def ensure_trl_venv(version: str = TRL_VERSION) -> Path:
    """The python of a cached venv with trl==version + datasets on top of our venv's packages."""
    venv = venv_cache() / f"trl-{version}"
    python = venv / "bin" / "python"
    parent_site = sysconfig.get_paths()["purelib"]  # our venv's site-packages
    started = time.perf_counter()
    if not python.exists():
        print(f"TRL venv: creating {venv} (no pip of its own; our pip installs into it)", flush=True)
        base = getattr(sys, "_base_executable", None) or sys.executable
        _run([base, "-m", "venv", "--without-pip", venv])
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    pth = Path(site) / "_rest_parent_env.pth"
    line = f"import site; site.addsitedir({parent_site!r})\n"  # after its own site-packages; runs our .pth files
    if not pth.exists() or pth.read_text() != line:
        print(f"TRL venv: {pth} -> our packages at {parent_site}", flush=True)
        pth.write_text(line)
    have = _trl_version_in(python)
    if have == version:
        print(f"TRL venv: {venv} has trl {have} (cached)", flush=True)
        return python
    freeze = subprocess.run([sys.executable, "-m", "pip", "freeze", "--all", "--exclude-editable"],
                            capture_output=True, text=True, check=True).stdout.splitlines()
    constraints = venv / "constraints.txt"
    constraints.write_text("\n".join(line for line in freeze if "==" in line and not line.startswith("-")) + "\n")
    print(f"TRL venv: installing trl=={version} and datasets; our {len(freeze)} packages pinned via {constraints}",
          flush=True)
    _run([sys.executable, "-m", "pip", "--python", python, "install", "--disable-pip-version-check",
          "-c", constraints, f"trl=={version}", "datasets"])
    have = _trl_version_in(python)
    if have != version:
        raise RuntimeError(f"TRL venv {venv}: trl {have} after install, wanted {version}")
    print(f"TRL venv: ready in {time.perf_counter() - started:.0f} s", flush=True)
    return python
