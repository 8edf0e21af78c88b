"""Label store speed on a 15k-item dataset: open/sync, reads, single edits, predictions. Last line: JSON."""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.core import Dataset, Item  # noqa: E402
from engine.labels import recovery  # noqa: E402
from engine.labels.store import LabelStore, PredictionRow  # noqa: E402

N = 15_000


def timed(fn) -> float:
    """Seconds one call of ``fn`` takes."""
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> None:
    """Time the store's hot paths and print them as one JSON object."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        items = [
            Item(
                f"{i // 500:02d}/frame_{i:05d}_rgb.png",
                f"{i // 500:02d}",
                root / f"{i}.png",
                (i * 0.37, i * 0.11),
            )
            for i in range(N)
        ]
        ds = Dataset(root, "biwi", "point", items)
        res: dict[str, float | int] = {"items": N}
        store: LabelStore | None = None

        def first_open() -> None:
            nonlocal store
            store = LabelStore.open(ds)

        res["open_new_s"] = timed(first_open)
        store.close()
        res["reopen_unchanged_s"] = timed(lambda: LabelStore.open(ds).close())
        for it in items[::150]:
            it.label = (it.label[0] + 1, it.label[1])
        res["reopen_100_changed_s"] = timed(lambda: LabelStore.open(ds).close())
        with LabelStore(root) as store:
            res["records_s"] = timed(store.records)
            res["effective_labels_s"] = timed(store.effective_labels)
            res["counts_s"] = timed(store.counts)
            edits = [timed(lambda i=i: store.correct(items[i].name, (1.0, float(i)))) for i in range(50)]
            res["edit_median_ms"] = statistics.median(edits) * 1000
            res["record_ms"] = timed(lambda: store.record(items[7].name)) * 1000
            rows = [PredictionRow(it.name, (1.0, 2.0), 0.5, 0.1) for it in items]
            res["put_predictions_s"] = timed(lambda: store.put_predictions("run1", rows))
            res["predictions_s"] = timed(lambda: store.predictions("run1"))
            for i, it in enumerate(items):  # every item corrected: a 15k-entry journal to check on open
                store.correct(it.name, (2.0, float(i)))
        db, journal = store.db_path, store.journal
        res["quick_check_s"] = timed(lambda: recovery.diagnose(db, journal))
        res["integrity_check_s"] = timed(lambda: recovery.diagnose(db, journal, full=True))
        res["journal_read_s"] = timed(journal.read)
        res["catch_up_s"] = timed(lambda: recovery.catch_up(db, journal))
        res["reopen_15k_corrected_s"] = timed(lambda: LabelStore.open(ds).close())
        db.write_bytes(b"")  # damaged: zero bytes; rebuilt from the day's backup plus the journal
        res["recover_15k_corrected_s"] = timed(lambda: LabelStore.open(ds).close())
    print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in res.items()}))


if __name__ == "__main__":
    main()
