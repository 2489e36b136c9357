"""Run logging that knows its rank: console, TensorBoard scalars and summary.csv.

Only rank 0 writes; other ranks get a logger whose methods do nothing, so the
training code never branches on the rank itself.

A resumed run continues the same summary.csv and TensorBoard log without repeating
what the interrupted run wrote after its last saved state: the state holds the
logger's position (:meth:`RunLogger.state_dict`), and a resume cuts summary.csv back to
the rows written by then and tells TensorBoard to hide the later events (``purge_step``).
"""
from __future__ import annotations

import csv
import logging
from pathlib import Path

from datafree.utils.dist import is_main_process

log = logging.getLogger("datafree")


class RunLogger:
    def __init__(self, out_dir: str | Path, tensorboard: bool = True, enabled: bool | None = None):
        self.out_dir = Path(out_dir)
        self.enabled = is_main_process() if enabled is None else enabled
        self.tensorboard = tensorboard
        self._writer = None
        self._csv_fields: list[str] | None = None
        self._rows: int | None = None  # data rows in summary.csv, once known
        # The newest TensorBoard step written, and what was written at it: a resume writes them again
        # after hiding everything from that step on, so that events of that step logged after the save vanish.
        self._step: int | None = None
        self._at_step: dict[str, float] = {}

    def _tensorboard(self, purge_step: int | None = None):
        # Opened on first use: a run that stops on bad input leaves no empty event files behind.
        if self._writer is None and self.enabled and self.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(log_dir=str(self.out_dir / "tensorboard"), purge_step=purge_step)
        return self._writer

    def info(self, message: str) -> None:
        if self.enabled:
            log.info(message)

    def warning(self, message: str) -> None:
        if self.enabled:
            log.warning(message)

    def scalars(self, step: int, values: dict[str, float]) -> None:
        writer = self._tensorboard()
        if writer is not None:
            for key, value in values.items():
                writer.add_scalar(key, value, step)
            if step != self._step:
                self._step, self._at_step = step, {}
            self._at_step.update({key: float(value) for key, value in values.items()})

    def summary(self, row: dict) -> None:
        """Append one row to summary.csv (header written once; new keys widen it)."""
        if not self.enabled:
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        path = self.out_dir / "summary.csv"
        if self._csv_fields is None and path.exists():
            # A resumed run appends to the rows written before the interruption.
            with path.open(newline="") as handle:
                self._csv_fields = next(csv.reader(handle), None) or None
        fields = list(row) if self._csv_fields is None else self._csv_fields + [k for k in row if k not in self._csv_fields]
        if self._csv_fields is not None and fields != self._csv_fields and path.exists():
            with path.open(newline="") as handle:
                rows = list(csv.DictReader(handle))
            with path.open("w", newline="") as handle:
                writer = csv.DictWriter(handle, fieldnames=fields)
                writer.writeheader()
                writer.writerows(rows)
        write_header = not path.exists() or self._csv_fields is None
        with path.open("w" if write_header else "a", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=fields)
            if write_header:
                writer.writeheader()
            writer.writerow({k: _fmt(v) for k, v in row.items()})
        self._csv_fields = fields
        self._rows = self._existing_rows() if self._rows is None else self._rows + 1

    def _existing_rows(self) -> int:
        path = self.out_dir / "summary.csv"
        if not path.is_file():
            return 0
        with path.open(newline="") as handle:
            return sum(1 for _ in csv.DictReader(handle))

    # -- where a resume continues ---------------------------------------------------------------------
    def state_dict(self) -> dict:
        """How far the logs go: summary.csv rows, the newest TensorBoard step and its values."""
        if not self.enabled:
            return {}
        rows = self._existing_rows() if self._rows is None else self._rows
        return {"rows": rows, "step": self._step, "scalars": dict(self._at_step)}

    def load_state_dict(self, state: dict) -> None:
        """Continue the logs where ``state`` left them: later summary.csv rows and TensorBoard events are dropped."""
        if not self.enabled or not state:
            return
        path = self.out_dir / "summary.csv"
        rows = int(state["rows"])
        if path.is_file():
            with path.open(newline="") as handle:
                reader = csv.reader(handle)
                header = next(reader, None)
                kept = [row for _, row in zip(range(rows), reader)]
            if header is not None:
                with path.open("w", newline="") as handle:
                    writer = csv.writer(handle)
                    writer.writerow(header)
                    writer.writerows(kept)
                self._csv_fields = header
        self._rows = rows
        step = state.get("step")
        writer = self._tensorboard(purge_step=0 if step is None else int(step))
        if writer is not None and step is not None:
            for key, value in state.get("scalars", {}).items():
                writer.add_scalar(key, value, int(step))
            self._step, self._at_step = int(step), dict(state.get("scalars", {}))

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def __enter__(self) -> "RunLogger":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _fmt(value):
    return f"{value:.6g}" if isinstance(value, float) else value
