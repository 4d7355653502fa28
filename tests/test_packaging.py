"""Issue 11 item 8: the top-level workers/ folder installs and imports as `rest.workers`, never as a bare
top-level `workers` package that could collide with another project's."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_setup_installs_workers_inside_rest():
    from setuptools import distutils  # noqa: F401  (setuptools' bundled distutils, for run_setup)
    from distutils.core import run_setup

    dist = run_setup(str(ROOT / "setup.py"), stop_after="init")
    assert "rest.workers" in dist.packages and dist.package_dir["rest.workers"] == "workers"
    assert not [p for p in dist.packages if p == "workers" or p.startswith("workers.")]


def test_workers_import_as_rest_workers_from_the_source_folder():
    import rest.workers.rollout as rollout

    assert Path(rollout.__file__).resolve() == ROOT / "workers" / "rollout.py"


def test_no_source_file_imports_a_bare_workers_package():
    offenders = []
    for path in [*ROOT.glob("rest/**/*.py"), *ROOT.glob("workers/**/*.py"), *ROOT.glob("tests/**/*.py"),
                 *ROOT.glob("bench/**/*.py"), *ROOT.glob("scripts/**/*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
            offenders += [f"{path.relative_to(ROOT)}: {n}" for n in names if n == "workers" or n.startswith("workers.")]
    assert not offenders, offenders
