"""Calibrated intervals: coverage at the asked rate, wider for harder items, Mondrian bins, the store column,
``predict --coverage`` end to end, CV+ out of fold and the INTERVAL reason."""

from __future__ import annotations

import csv
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from engine.audit.conformal import (
    CoverageError,
    calibrate,
    interval_findings,
    out_of_fold_intervals,
    outside,
    with_intervals,
)
from engine.audit.findings import INTERVAL
from engine.cli import main
from engine.data import open_dataset
from engine.data.synth import make_biwi, make_utkface
from engine.labels.store import LabelStore, PredictionRow


def _scalar_rows(rng: np.random.Generator, n: int, shift: int = 0) -> tuple[list[PredictionRow], dict]:
    """Predictions with a known, item-specific noise scale that the rows report as their spread."""
    sigma = rng.uniform(0.5, 5.0, n)
    pred = rng.uniform(0, 100, n)
    y = pred + sigma * rng.standard_normal(n)
    rows = [
        PredictionRow(f"i{shift + i}", (float(p),), spread=float(s))
        for i, (p, s) in enumerate(zip(pred, sigma))
    ]
    return rows, {r.item: (float(v),) for r, v in zip(rows, y)}


def _point_rows(rng: np.random.Generator, n: int, shift: int = 0) -> tuple[list[PredictionRow], dict]:
    sigma = rng.uniform(1.0, 8.0, n)
    pred = rng.uniform(0, 300, (n, 4))
    y = pred + sigma[:, None] * rng.standard_normal((n, 4))
    rows = [
        PredictionRow(f"p{shift + i}", tuple(map(float, p)), spread=float(s))
        for i, (p, s) in enumerate(zip(pred, sigma))
    ]
    return rows, {r.item: tuple(map(float, v)) for r, v in zip(rows, y)}


def _covered(rows: list[PredictionRow], labels: dict, point: bool) -> np.ndarray:
    return np.array([outside(r, labels[r.item], point) == 0 for r in rows])


@pytest.mark.parametrize("point", [False, True])
def test_intervals_cover_at_the_asked_rate(point: bool) -> None:
    make = _point_rows if point else _scalar_rows
    rates = []
    for seed in range(6):
        rng = np.random.default_rng(seed)
        cal_rows, cal_labels = make(rng, 400)
        test_rows, test_labels = make(rng, 3000, shift=10_000)
        rows = with_intervals(test_rows, calibrate(cal_rows, cal_labels, point, 0.9))
        if point:  # each point's own region: coverage counted per point
            d = np.stack(
                [np.hypot(*(np.subtract(r.pred, test_labels[r.item])).reshape(-1, 2).T) for r in rows]
            )
            rates.append(float((d <= np.array([r.interval for r in rows])).mean()))
        else:
            rates.append(float(_covered(rows, test_labels, point).mean()))
        assert all(r.coverage == 0.9 for r in rows)
    assert 0.87 <= float(np.mean(rates)) <= 0.93, rates
    assert all(0.84 <= r <= 0.96 for r in rates), rates


def test_harder_items_get_wider_intervals_and_the_hard_quarter_is_covered() -> None:
    rng = np.random.default_rng(3)
    cal_rows, cal_labels = _scalar_rows(rng, 500)
    test_rows, test_labels = _scalar_rows(rng, 4000, shift=10_000)
    cal = calibrate(cal_rows, cal_labels, False, 0.9)
    assert cal.floor == 0.1  # a spread that is the noise scale keeps its full say
    rows = with_intervals(test_rows, cal)
    width = np.array([r.interval[1] - r.interval[0] for r in rows])
    sigma = np.array([r.spread for r in rows])
    assert np.corrcoef(width, sigma)[0, 1] > 0.99
    hard = sigma >= np.quantile(sigma, 0.75)
    assert 0.84 <= _covered(rows, test_labels, False)[hard].mean() <= 0.96


def test_a_spread_that_says_nothing_gets_a_floor_that_keeps_intervals_narrow() -> None:
    """A weak model's flip spread, unrelated to its error: the chosen floor drowns it out, widths stay sane."""

    def rows(rng: np.random.Generator, n: int, shift: int) -> tuple[list[PredictionRow], dict]:
        pred = rng.uniform(0, 100, n)
        y = pred + 10 * rng.standard_normal(n)
        spread = rng.lognormal(0, 1.5, n)  # heavy-tailed and meaningless
        out = [
            PredictionRow(f"w{shift + i}", (float(p),), spread=float(s))
            for i, (p, s) in enumerate(zip(pred, spread))
        ]
        return out, {r.item: (float(v),) for r, v in zip(out, y)}

    rates = []
    for seed in range(5):
        rng = np.random.default_rng(seed)
        cal_rows, cal_labels = rows(rng, 300, 0)
        test_rows, test_labels = rows(rng, 2000, 10_000)
        cal = calibrate(cal_rows, cal_labels, False, 0.9)
        assert cal.floor is not None and cal.floor >= 2
        out = with_intervals(test_rows, cal)
        width = np.array([r.interval[1] - r.interval[0] for r in out])
        # Near the plain interval for sigma 10 (2 x 1.645 x 10), not many times it as the tenth-median floor gives.
        assert np.median(width) < 1.3 * 2 * 1.645 * 10
        rates.append(_covered(out, test_labels, False).mean())
    assert 0.87 <= np.mean(rates) <= 0.93, rates


def test_mondrian_bins_calibrate_each_range_on_its_own() -> None:
    """Noise that grows with the value but no spread to say so: one calibration over-covers the low range."""
    rng = np.random.default_rng(5)

    def rows_of(n: int, shift: int) -> tuple[list[PredictionRow], dict]:
        pred = rng.uniform(0, 100, n)
        y = pred + (0.5 + pred / 10) * rng.standard_normal(n)
        rows = [PredictionRow(f"m{shift + i}", (float(p),)) for i, p in enumerate(pred)]
        return rows, {r.item: (float(v),) for r, v in zip(rows, y)}

    cal_rows, cal_labels = rows_of(2000, 0)
    test_rows, test_labels = rows_of(4000, 10_000)
    low = np.array([r.pred[0] < 25 for r in test_rows])
    plain = _covered(
        with_intervals(test_rows, calibrate(cal_rows, cal_labels, False, 0.9)), test_labels, False
    )
    bins = _covered(
        with_intervals(test_rows, calibrate(cal_rows, cal_labels, False, 0.9, mondrian=4)), test_labels, False
    )
    assert plain[low].mean() > 0.97  # one width for all: far too wide where values are small
    assert 0.85 <= bins[low].mean() <= 0.95 and 0.85 <= bins[~low].mean() <= 0.95


def test_too_few_calibration_items_or_a_bad_coverage_is_refused() -> None:
    rows, labels = _scalar_rows(np.random.default_rng(0), 5)
    with pytest.raises(CoverageError, match="at least"):
        calibrate(rows, labels, False, 0.9)
    rows, labels = _scalar_rows(np.random.default_rng(0), 50)
    for bad in (0.0, 1.0, 1.5, float("nan")):
        with pytest.raises(CoverageError):
            calibrate(rows, labels, False, bad)


def test_out_of_fold_intervals_cover_and_flag_a_planted_label() -> None:
    rng = np.random.default_rng(7)
    rows, labels = _scalar_rows(rng, 600)
    wrong = rows[17].item
    labels[wrong] = (labels[wrong][0] + 60,)
    rows = out_of_fold_intervals(rows, labels, False, 0.9)
    assert 0.86 <= _covered(rows, labels, False).mean() <= 0.94
    found = interval_findings(rows, labels, False, "years")
    assert found[0].item == wrong and found[0].reason == INTERVAL
    assert "outside the 90% interval" in found[0].why and "years" in found[0].why


def test_store_keeps_intervals_and_an_older_store_gains_the_columns(tmp_path: Path) -> None:
    make_utkface(tmp_path / "u", n=4, size=32, seed=1)
    ds = open_dataset(tmp_path / "u")
    store = LabelStore.open(ds)
    name = ds.items[0].name
    store.put_predictions("r1", [PredictionRow(name, (30.0,), 2.0, 1.0, None, (25.5, 34.5), 0.9)])
    assert store.predictions("r1")[name].interval == (25.5, 34.5)
    assert store.predictions("r1")[name].coverage == 0.9
    path = store.dir / "labels.sqlite"
    store.close()
    with sqlite3.connect(path) as conn:  # as a store made before intervals
        conn.execute("ALTER TABLE predictions DROP COLUMN interval")
        conn.execute("ALTER TABLE predictions DROP COLUMN coverage")
    store = LabelStore.open(ds)
    row = store.predictions("r1")[name]
    assert row.interval is None and row.pred == (30.0,)
    store.put_predictions("r1", [PredictionRow(name, (31.0,), interval=(1.0, 2.0), coverage=0.8)])
    assert store.predictions("r1")[name].interval == (1.0, 2.0)
    store.close()


@pytest.mark.parametrize("bad", ["0", "1", "1.5", "nan", "much"])
def test_cli_refuses_a_bad_coverage_in_one_line(bad: str, tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as e:
        main(["predict", "some-run", str(tmp_path), "--coverage", bad])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "coverage" in err[-1] and "Traceback" not in "\n".join(err)


@pytest.mark.usefixtures("one_torch_thread")
def test_predict_coverage_writes_a_radius_per_item(tmp_path: Path) -> None:
    from engine.learn.train import TrainConfig, train

    root = tmp_path / "biwi"
    make_biwi(root, groups=3, frames=8, size=(64, 48))
    ds = open_dataset(root)
    cfg = TrainConfig(
        arch="tiny", pretrained=False, size=(32, 32), bs=4, epochs=1, device="cpu", valid_pct=0.5
    )
    info = train(ds, None, cfg)
    out = tmp_path / "p.csv"
    assert main(["predict", str(info.run_dir), str(root), "--coverage", "0.9", "--out", str(out)]) == 0
    rows = list(csv.DictReader(out.open()))
    assert rows and all(float(r["radius"]) > 0 for r in rows)
    store = LabelStore.open(open_dataset(root))
    stored = store.predictions(info.run_id)
    assert all(p.interval is not None and p.coverage == 0.9 for p in stored.values())
    store.close()
