"""The demo skeleton: `up` starts server, worker and alert receiver; `down` stops every process it started."""
import json
import os
import subprocess
import sys
import time

import httpx
import pytest


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie of ours is gone for our purposes
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.slow
def test_demo_up_serves_the_ui_and_down_stops_everything_it_started(tmp_path):
    demo_dir = tmp_path / "demo"
    up = subprocess.Popen([sys.executable, "-m", "orderhub.infra.demo", "up", "--dir", str(demo_dir), "--port", "0"],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        lines = []
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline:
            line = up.stdout.readline()
            assert line, "demo exited early:\n" + "".join(lines)
            lines.append(line)
            if "orderhub demo is running" in line:
                break
        print("ready after", time.monotonic() - deadline + 150)
        ui_url = line.rsplit(" ", 1)[-1].strip()
        state = json.loads((demo_dir / "demo.json").read_text())
        assert state["pid"] == up.pid and state["ui_url"] == ui_url
        assert {p["name"] for p in state["processes"]} == {"prefect-server", "worker"}
        assert httpx.get(f"{ui_url}/api/health").json() is True
        pools = httpx.post(f"{ui_url}/api/work_pools/filter", json={}).json()
        assert [p["name"] for p in pools if p["name"] == "orderhub"] == ["orderhub"]
        autos = httpx.post(f"{ui_url}/api/automations/filter", json={}).json()
        assert [a["name"] for a in autos] == ["orderhub-alert-webhook"]

        down = subprocess.run([sys.executable, "-m", "orderhub.infra.demo", "down", "--dir", str(demo_dir)],
                              capture_output=True, text=True, timeout=60)
        assert down.returncode == 0 and "demo stopped" in down.stdout
        assert up.wait(30) == 0
        print("stopped after", time.monotonic() - deadline + 150)
        assert not (demo_dir / "demo.json").exists()
        assert [p for p in state["processes"] if _alive(p["pid"])] == []
    finally:
        if up.poll() is None:
            up.kill()
