"""When pipelines run: ``schedules.yaml`` (readable, Asia/Shanghai) and the pipeline files in ``pipelines/``."""
from pathlib import Path

HERE = Path(__file__).resolve().parent
PIPELINES = HERE / "pipelines"
