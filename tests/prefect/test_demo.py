"""The demo frame: `up` starts server, worker and alert receiver and records them; `down` stops all of them.

The pipeline hooks (sandboxes, deployments, first syncs) are stubbed here: this tests the frame only; the
whole demo is exercised by the demo's own test.
"""
import json
import os
import subprocess
import sys
import time

import httpx
import pytest

# `up` with the lead's hooks replaced by no-ops and a fixed ready marker
UP_FRAME_ONLY = """
import sys
import orderhub.infra.demo as demo
demo.start_sandboxes = demo.deploy_pipelines = lambda d: None
demo.run_first_sync = lambda d: None
demo.print_summary = lambda d, s: print("DEMO-READY", d.ui_url, flush=True)
sys.exit(demo.main(sys.argv[1:]))
"""


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is gone for our purposes
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.slow
def test_demo_up_serves_the_ui_and_down_stops_everything_it_started(tmp_path):
    demo_dir = tmp_path / "demo"
    up = subprocess.Popen([sys.executable, "-c", UP_FRAME_ONLY, "up", "--dir", str(demo_dir), "--port", "0"],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        lines = []
        for line in up.stdout:
            lines.append(line)
            if line.startswith("DEMO-READY"):
                break
        assert lines and lines[-1].startswith("DEMO-READY"), "demo exited early:\n" + "".join(lines)
        ui_url = lines[-1].split()[1]
        state = json.loads((demo_dir / "demo.json").read_text())
        assert state["pid"] == up.pid and state["ui_url"] == ui_url
        assert [p["name"] for p in state["processes"]] == ["prefect-server", "worker"]
        assert httpx.get(f"{ui_url}/api/health").json() is True
        pools = httpx.post(f"{ui_url}/api/work_pools/filter", json={}).json()
        assert [p["name"] for p in pools if p["name"] == "orderhub"] == ["orderhub"]
        autos = httpx.post(f"{ui_url}/api/automations/filter", json={}).json()
        assert [a["name"] for a in autos] == ["orderhub-alert-webhook"]

        t0 = time.monotonic()
        down = subprocess.run([sys.executable, "-m", "orderhub.infra.demo", "down", "--dir", str(demo_dir)],
                              capture_output=True, text=True, timeout=60)
        assert down.returncode == 0 and "demo stopped" in down.stdout
        assert up.wait(30) == 0
        assert time.monotonic() - t0 < 20
        assert not (demo_dir / "demo.json").exists()
        assert [p for p in state["processes"] if _alive(p["pid"])] == []
    finally:
        if up.poll() is None:  # a failed assertion: stop the demo the way a user would, leaving no orphans
            subprocess.run([sys.executable, "-m", "orderhub.infra.demo", "down", "--dir", str(demo_dir)],
                           capture_output=True, timeout=90)
            if up.poll() is None:
                up.kill()
