"""Run logging that knows its rank: console, TensorBoard scalars and summary.csv.

Only rank 0 writes; other ranks get a logger whose methods do nothing, so the
training code never branches on the rank itself.
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

    def _tensorboard(self):
        # Opened on first use: a run that stops on bad input leaves no empty event files behind.
        if self._writer is None and self.enabled and self.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(log_dir=str(self.out_dir / "tensorboard"))
        return self._writer

    def info(self, message: str) -> None:
        if self.enabled:
            log.info(message)

    def scalars(self, step: int, values: dict[str, float]) -> None:
        writer = self._tensorboard()
        if writer is not None:
            for key, value in values.items():
                writer.add_scalar(key, value, step)

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
