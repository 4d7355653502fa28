from pathlib import Path

from setuptools import find_packages, setup

ROOT = Path(__file__).parent


def read_requirements(name: str) -> list[str]:
    """Requirement lines of requirements/NAME.txt, following `-r` includes."""
    out = []
    for line in (ROOT / "requirements" / name).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("-r "):
            out += read_requirements(line[3:].strip())
        else:
            out.append(line)
    return out


setup(
    name="rest",
    version="0.1.0",
    description="Distributed RL trainer for tool-using LLMs: ResT, GRPO, Dr.GRPO, DAPO on Ray + vLLM + FSDP2",
    python_requires=">=3.10",
    # the top-level workers/ folder installs as rest.workers (rest/__init__.py names it so in a source checkout):
    # no bare top-level `workers` package in site-packages to collide with another project's
    packages=find_packages(include=["rest", "rest.*"]) + ["rest.workers"],
    package_dir={"rest.workers": "workers"},
    # The stacks differ by device: `pip install -e .[cpu]` or `.[gpu]`; the Makefile does the CPU one.
    install_requires=[],
    extras_require={
        "cpu": read_requirements("cpu.txt"),
        "gpu": read_requirements("gpu.txt"),
        "dev": read_requirements("dev.txt"),
    },
)
