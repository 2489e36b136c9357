"""The run logger's position: a resume drops the summary.csv rows and TensorBoard events logged after the saved state."""
import csv

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from datafree.utils.logging import RunLogger


def _scalars(folder) -> dict[str, list]:
    events = EventAccumulator(str(folder / "tensorboard"), size_guidance={"scalars": 0})
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def _log(logger: RunLogger, step: int) -> None:
    logger.scalars(step, {"train/loss": float(step)})
    if step % 2 == 0:
        logger.scalars(step, {"eval/accuracy": step / 10})
        logger.summary({"step": step, "accuracy": step / 10})


def test_a_resumed_logger_continues_where_the_state_left_it(tmp_path):
    whole, run = tmp_path / "whole", tmp_path / "run"
    with RunLogger(whole, enabled=True) as logger:
        for step in range(1, 7):
            _log(logger, step)
    with RunLogger(run, enabled=True) as logger:
        for step in range(1, 5):
            _log(logger, step)
            if step == 2:
                saved = logger.state_dict()  # the state saved after step 2 ...
    assert saved == {"rows": 1, "step": 2, "scalars": {"train/loss": 2.0, "eval/accuracy": 0.2}}
    with RunLogger(run, enabled=True) as logger:  # ... and the run resumed from it, after logging up to step 4
        logger.load_state_dict(saved)
        for step in range(3, 7):
            _log(logger, step)
    with (run / "summary.csv").open(newline="") as handle:
        assert [row["step"] for row in csv.DictReader(handle)] == ["2", "4", "6"]
    assert _scalars(run) == _scalars(whole)
    assert RunLogger(run, enabled=False).state_dict() == {}  # ranks other than 0 log nothing and restore nothing
