"""The machine under a run: CPU, memory, disk and network (and GPU where MLflow finds one) as the run's
`system/<name>` metrics, which the MLflow run page shows under "System metrics".

MLflow's SystemMetricsMonitor measures; its sampling loop is not used, because it publishes a sample
only one interval after taking it and drops the one pending when it stops (a run shorter than the
interval records nothing), its writes are not retried when SQLite reports a lock (parallel jobs on
one file: the monitor gives up), and it reads the run's status from the store at every sample.
"""

from __future__ import annotations

import logging
import threading
import time

import psutil
from mlflow.entities import Metric
from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

from trainer.tracking import secrets
from trainer.tracking.store import with_lock_retries

# MLflow's default of 10 s draws one or two points for a short run. CPU utilisation is measured
# over the whole time since the previous sample, whatever the interval, so the interval sets only
# the chart's resolution and the number of store writes: every 2 s, like the epoch metrics
# (tracker.SEND_INTERVAL_S). $MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL, if set, wins.
INTERVAL_S = 2.0
PREFIX = "system/"
THREAD_NAME = "mlflow-system-metrics"

log = logging.getLogger(__name__)


class SystemMetrics:
    """Samples the machine every interval on a background thread, as steps first_step, first_step + 1,
    ... of one run's `system/` metrics, until `stop`, which records the time since the last sample."""

    def __init__(self, client, run_id: str, *, first_step: int = 0):
        self._client, self._run_id, self._step = client, run_id, first_step
        self._monitor = SystemMetricsMonitor(run_id, sampling_interval=INTERVAL_S, tracking_uri=client.tracking_uri)
        self._interval = float(self._monitor.sampling_interval)
        self._stopping = threading.Event()
        self._sampled_at: float | None = None  # time.monotonic() of this run's last sample
        # psutil's first CPU reading only starts its clock (it returns 0.0): start it now, so the
        # first sample covers the time since the run started.
        psutil.cpu_percent()
        self._thread = threading.Thread(target=self._sample_until_stopped, name=THREAD_NAME, daemon=True)
        self._thread.start()

    def _sample_until_stopped(self) -> None:
        while not self._stopping.wait(self._interval):
            try:
                self._sample()
            except Exception as err:  # never a reason to fail the run; its own metrics still go on
                log.warning("system metrics stopped: %s", secrets.redact_text(str(err)))
                return

    def _sample(self) -> None:
        self._monitor.collect_metrics()
        values = self._monitor.aggregate_metrics()
        for monitor in self._monitor.monitors:
            monitor.clear_metrics()
        now = int(time.time() * 1000)
        metrics = [Metric(PREFIX + key, float(value), now, self._step) for key, value in values.items()]
        with_lock_retries(self._client.log_batch, self._run_id, metrics=metrics)
        self._step += 1
        self._sampled_at = time.monotonic()

    def stop(self) -> None:
        """End the sampling and record the last, partial interval (called before the run's status is
        set): a run shorter than one interval gets its one sample here. A sample moments after the
        previous one is skipped: CPU utilisation over a few clock ticks is 0 % or 100 %."""
        self._stopping.set()
        self._thread.join()
        if self._sampled_at is None or time.monotonic() - self._sampled_at >= self._interval / 4:
            self._sample()
