"""--report-to: every number of metrics.jsonl reaches TensorBoard (read back with tensorboard's own
event reader) at its step, with the config; a resumed run's redone steps replace the old ones;
wandb gets the same values (offline when not logged in); a missing library fails before loading."""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import types
from pathlib import Path

import pytest

from instruct_tune.config import TrainConfig, check
from instruct_tune.config_file import save_yaml
from instruct_tune.errors import ConfigError
from instruct_tune.train.outdir import MetricsLog
from instruct_tune.train.run import train
from tests.train.conftest import metrics


def _events(logdir: Path):
    ea_mod = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    ea = ea_mod.EventAccumulator(str(logdir), size_guidance={"scalars": 0, "tensors": 0})
    ea.Reload()
    return ea


def _scalars(ea) -> dict[str, dict[int, float]]:
    """{tag: {step: value}}; each step once (a step written twice would be two events)."""
    out = {}
    for tag in ea.Tags()["scalars"]:
        events = [(e.step, e.value) for e in ea.Scalars(tag)]
        assert len({s for s, _ in events}) == len(events), (tag, events)
        out[tag] = dict(events)
    return out


def test_tensorboard_has_every_metric_at_its_step(make_cfg, eval_file, tmp_path):
    pytest.importorskip("tensorboard")
    cfg = make_cfg(out=tmp_path / "run", max_steps=6, log_every=2, eval_every=3,
                   eval_data=str(eval_file), report_to="tensorboard")
    train(cfg)
    logged = metrics(cfg.out)
    expected: dict[str, dict[int, float]] = {}
    for rec in logged:
        for key, value in rec.items():
            if key != "step" and isinstance(value, int | float) and not isinstance(value, bool):
                expected.setdefault(key, {})[rec["step"]] = float(value)
    assert {"loss", "eval_loss", "lr", "grad_norm", "tokens_per_s"} <= set(expected)
    assert sorted(expected["eval_loss"]) == [3, 6]  # None at steps without eval: not logged

    ea = _events(Path(cfg.out) / "tensorboard")
    got = _scalars(ea)
    assert set(got) == set(expected)
    for key, by_step in expected.items():
        assert sorted(got[key]) == sorted(by_step), key
        for step, value in by_step.items():  # event files store float32
            assert math.isclose(got[key][step], value, rel_tol=1e-6, abs_tol=1e-9), (key, step)

    saved = (Path(cfg.out) / "config.yaml").read_text()
    text = ea.Tensors("config/text_summary")[0].tensor_proto.string_val[0].decode()
    assert [ln.strip() for ln in text.splitlines()] == [ln.strip() for ln in saved.splitlines()]
    hparams = ea.PluginTagToContent("hparams")
    assert hparams, "no hparams summary"
    from tensorboard.plugins.hparams import plugin_data_pb2

    start = next(plugin_data_pb2.HParamsPluginData.FromString(v).session_start_info
                 for v in hparams.values()
                 if plugin_data_pb2.HParamsPluginData.FromString(v).HasField("session_start_info"))
    assert start.hparams["lr"].number_value == pytest.approx(cfg.lr)
    assert start.hparams["report_to"].string_value == "tensorboard"


def _run_dir(tmp_path: Path, report_to: str) -> Path:
    run = tmp_path / "run"
    run.mkdir()
    save_yaml(TrainConfig(model="m", data="d", out=str(run), report_to=report_to, lr=3e-4),
              run / "config.yaml")
    return run


def test_resumed_steps_replace_the_interrupted_ones(tmp_path):
    """A run killed after its step-3 checkpoint logged steps 4-5; the resumed run logs them again:
    TensorBoard (like metrics.jsonl) keeps only the resumed run's values."""
    pytest.importorskip("tensorboard")
    run = _run_dir(tmp_path, "tensorboard")
    log = MetricsLog(run / "metrics.jsonl")
    for step in range(1, 6):
        log.write({"step": step, "loss": 10.0 + step, "eval_loss": None})
    log.close()
    log = MetricsLog(run / "metrics.jsonl", resume_step=3)
    for step in (4, 5, 6):
        log.write({"step": step, "loss": 20.0 + step, "eval/stop_rate": step / 10})
    log.close()
    got = _scalars(_events(run / "tensorboard"))
    assert got["loss"] == {1: 11.0, 2: 12.0, 3: 13.0, 4: 24.0, 5: 25.0, 6: 26.0}
    assert got["eval/stop_rate"] == pytest.approx({4: 0.4, 5: 0.5, 6: 0.6})
    jsonl = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert {r["step"]: r["loss"] for r in jsonl} == got["loss"]


def test_no_trackers_without_report_to(tmp_path):
    run = _run_dir(tmp_path, "none")
    log = MetricsLog(run / "metrics.jsonl")
    log.write({"step": 1, "loss": 1.0})
    log.close()
    assert log.trackers == [] and sorted(p.name for p in run.iterdir()) == ["config.yaml",
                                                                            "metrics.jsonl"]


class _FakeRun:
    def __init__(self, **kw):
        self.init, self.logged, self.finished = kw, [], False

    def log(self, values, step):
        self.logged.append((step, dict(values)))

    def finish(self):
        self.finished = True


def test_wandb_gets_the_numbers_offline_when_not_logged_in(tmp_path, monkeypatch):
    """What we hand wandb (a stand-in module records it): offline mode without a login, the
    config, every number at its step, the same run id on resume."""
    runs: list[_FakeRun] = []
    fake = types.SimpleNamespace(init=lambda **kw: runs.append(_FakeRun(**kw)) or runs[-1])
    monkeypatch.setitem(sys.modules, "wandb", fake)
    for var in ("WANDB_MODE", "WANDB_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    monkeypatch.setenv("HOME", str(tmp_path))
    run = _run_dir(tmp_path, "wandb")
    log = MetricsLog(run / "metrics.jsonl")
    log.write({"step": 2, "loss": 1.5, "eval_loss": None, "lr": 1e-4, "skipped": True})
    log.close()
    log = MetricsLog(run / "metrics.jsonl", resume_step=2)
    log.write({"step": 3, "loss": 1.25, "eval/exact_match": 0.5})
    log.close()
    first, resumed = runs
    assert first.init["mode"] == "offline" and first.init["config"]["lr"] == 3e-4
    assert first.init["dir"] == str(run)
    assert first.logged == [(2, {"loss": 1.5, "lr": 1e-4})] and first.finished
    assert resumed.init["id"] == first.init["id"]
    assert resumed.logged == [(3, {"loss": 1.25, "eval/exact_match": 0.5})]


def test_missing_library_is_refused_before_loading(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "wandb" else real(name, *a))
    cfg = TrainConfig(model="m", data="d.jsonl", out="o", report_to="wandb")
    with pytest.raises(ConfigError, match=r"--report-to wandb needs the wandb package.*"
                                          r"pip install 'instruct-tune\[wandb\]'"):
        check(cfg)
    check(dataclasses.replace(cfg, report_to="none"))  # no error
