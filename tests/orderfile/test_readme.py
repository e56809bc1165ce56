"""The example of connectors/orderfile/README.md runs as written: 7 orders, then nothing on the second run."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).parents[2] / "connectors" / "orderfile" / "README.md"


def test_readme_example_imports_seven_orders_then_nothing(tmp_path: Path):
    script = re.search(r"## Example.*?```bash\n(.*?)```", README.read_text(encoding="utf-8"), re.S).group(1)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    out = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[-2:] == ["7", "0"]
    run1 = (tmp_path / "run1.jsonl").read_text(encoding="utf-8")
    assert run1.count('"type":"RECORD","stream":"file_orders"') == 7
    assert run1.count('"type":"RECORD","stream":"orderfile_rejects"') == 0
