"""What the GPU smoke check assumes of the GPU machine, checked here: the modules tests/gpu drives import without
Ray and vLLM (absent there), and the wheelhouse it carries pins what the project pins."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

GUARD = """
import importlib.abc, sys
class Absent(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in {"ray", "vllm", "wandb"}:
            raise ModuleNotFoundError(name)
sys.meta_path.insert(0, Absent())
import rest.workers.fsdp_actor, rest.workers.rollout, rest.workers.weight_sync, rest.config.load, rest.trainer.batch, rest.models.cache
print("ok")
"""


def test_the_workers_the_gpu_tests_drive_import_without_ray_or_vllm():
    out = subprocess.run([sys.executable, "-c", GUARD], cwd=ROOT, capture_output=True, text=True, timeout=120,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


def pins(path: Path) -> dict[str, str]:
    found = {}
    for line in path.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.-]+)==([^\s#]+)", line.strip())
        if match:
            found[match.group(1).lower()] = match.group(2)
    return found


def test_the_wheelhouse_pins_what_the_project_pins():
    carried = pins(ROOT / "scripts" / "gpu_smoke_wheels.txt")
    project = pins(ROOT / "requirements" / "common.txt")
    shared = set(carried) & set(project)
    assert {"hydra-core", "omegaconf", "tensordict", "dashscope"} <= shared
    assert {name: carried[name] for name in shared} == {name: project[name] for name in shared}
