"""The cluster path as a user takes it: start a Ray head (loopback, dashboard + job server), submit the CPU
recipe with `ray job submit --runtime-env conf/runtime_env.yaml`, wait for SUCCEEDED, read `ray job logs`.

The head runs as `ray start --head --block` in a process of its own: the test stops exactly that cluster by
signalling it (its reaper takes the Ray processes down) instead of `ray stop`, which would stop every Ray
cluster of this user on the machine. Ray 2.60 turns token authentication on for clusters started where
~/.ray/auth_token exists, so the head and every CLI call share a fresh token through RAY_AUTH_TOKEN.
"""

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
RAY = Path(sys.executable).parent / "ray"
STATES = ("SUCCEEDED", "FAILED", "STOPPED")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ray_cli(env, *args, timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run([str(RAY), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def stop_head(head: subprocess.Popen, temp_dir: Path) -> None:
    if head.poll() is None:
        head.send_signal(signal.SIGTERM)
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)  # its own session: only the processes this test started
            head.wait(timeout=30)
    # anything of this cluster still alive is found by its temp dir in the command line
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if str(temp_dir).encode() in (proc / "cmdline").read_bytes():
                    os.kill(int(proc.name), signal.SIGKILL)
            except (OSError, ProcessLookupError):
                pass


@pytest.fixture
def ray_head():
    # unix socket paths under --temp-dir must stay short (< 108 characters): not pytest's tmp_path
    temp_dir = Path(tempfile.mkdtemp(prefix="rest-rayjob-", dir="/tmp"))
    port, dashboard_port = free_port(), free_port()
    env = {**os.environ, "PATH": f"{RAY.parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32), "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ADDRESS", None)
    log = open(temp_dir / "head.log", "w")
    head = subprocess.Popen(
        [str(RAY), "start", "--head", "--block", f"--port={port}", "--node-ip-address=127.0.0.1", "--num-cpus=2",
         "--num-gpus=0", "--include-dashboard=true", "--dashboard-host=127.0.0.1",
         f"--dashboard-port={dashboard_port}", f"--temp-dir={temp_dir}", "--disable-usage-stats"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    address = f"http://127.0.0.1:{dashboard_port}"
    try:
        deadline = time.time() + 180
        while ray_cli(env, "job", "list", "--address", address).returncode != 0:
            if head.poll() is not None or time.time() > deadline:
                raise AssertionError(f"the Ray head did not come up:\n{(temp_dir / 'head.log').read_text()[-4000:]}")
            time.sleep(2)
        yield address, env
    finally:
        stop_head(head, temp_dir)
        log.close()
        shutil.rmtree(temp_dir, ignore_errors=True)


def test_cpu_recipe_runs_as_a_ray_job(ray_head, tmp_path):
    address, env = ray_head
    job_id = f"rest-ci-{secrets.token_hex(4)}"
    submit = ["job", "submit", "--address", address, "--runtime-env", "conf/runtime_env.yaml",
              "--submission-id", job_id, "--no-wait", "--",
              "python", "-m", "rest.main", "+recipe=tiny_cpu", "trainer.total_steps=1", "trainer.ray_address=auto",
              f"trainer.run_dir={tmp_path / 'run'}", "trainer.progress_bar=false", "trainer.save_final=false",
              "trainer.export_hf=false", "data.embedded_train_size=64"]
    # the dashboard answers `job list` before its job agent has registered: Ray then asks to try again later
    submitted, deadline = ray_cli(env, *submit), time.time() + 120
    while "No available agent to submit job" in submitted.stdout + submitted.stderr and time.time() < deadline:
        time.sleep(3)
        submitted = ray_cli(env, *submit)
    assert submitted.returncode == 0, submitted.stdout + submitted.stderr

    state, deadline = "PENDING", time.time() + 600
    while state not in STATES and time.time() < deadline:
        time.sleep(5)
        status = ray_cli(env, "job", "status", job_id, "--address", address)
        state = next((s for s in STATES if f"'{job_id}' {s.lower()}" in status.stdout.lower()
                      or f"status: {s}" in status.stdout), state)
    logs = ray_cli(env, "job", "logs", job_id, "--address", address).stdout
    assert state == "SUCCEEDED", f"job ended {state}:\n{logs[-6000:]}"
    assert "step 1:" in logs
    assert (tmp_path / "run" / "metrics.jsonl").exists()  # the job's driver wrote where it was told
