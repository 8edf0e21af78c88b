"""Persistent GUI settings (QSettings: geometry, docks, recent datasets, view toggles) and shipped resources."""

from __future__ import annotations

import hashlib
import os
from functools import cache
from pathlib import Path

from PySide6.QtCore import QPointF, QSettings, Qt
from PySide6.QtGui import QColor, QIcon, QPainter, QPen, QPixmap

ORG = "imgreg"
APP = "imgreg-gui"
SETTINGS_DIR_ENV = "IMGREG_SETTINGS_DIR"
MAX_RECENT = 10


def settings() -> QSettings:
    """The app's settings: an INI file in ``$IMGREG_SETTINGS_DIR`` when set (tests), else the platform default."""
    folder = os.environ.get(SETTINGS_DIR_ENV)
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        return QSettings(str(Path(folder) / f"{APP}.ini"), QSettings.Format.IniFormat)
    return QSettings(ORG, APP)


def _as_list(value: object) -> list[str]:
    """QSettings returns a str for a one-element list in INI files, and None when absent."""
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list | tuple):
        return [str(v) for v in value]
    return [str(value)]


def recent_datasets() -> list[str]:
    """Recently opened dataset folders, newest first, only those that still exist."""
    return [p for p in _as_list(settings().value("recent")) if Path(p).exists()]


def add_recent(path: str | Path) -> list[str]:
    """Put ``path`` first in the recent list (deduplicated, capped); returns the new list."""
    path = str(Path(path).resolve())
    items = [path] + [p for p in _as_list(settings().value("recent")) if p != path]
    items = items[:MAX_RECENT]
    s = settings()
    s.setValue("recent", items)
    s.sync()
    return items


def clear_recent() -> None:
    """Forget the recent datasets."""
    s = settings()
    s.remove("recent")
    s.sync()


def _item_key(root: str | Path) -> str:
    digest = hashlib.sha1(str(Path(root).resolve()).encode("utf-8")).hexdigest()[:16]
    return f"last_item/{digest}"


def last_item(root: str | Path) -> str | None:
    """The item last shown in the dataset at ``root`` (reopening starts there), or None."""
    value = settings().value(_item_key(root))
    return value if isinstance(value, str) and value else None


def set_last_item(root: str | Path, name: str | None) -> None:
    """Remember ``name`` as the item last shown in the dataset at ``root``."""
    if name:
        set_value(_item_key(root), name)


def get_bool(key: str, default: bool) -> bool:
    """A boolean setting (INI files store them as strings)."""
    value = settings().value(key, default)
    if isinstance(value, str):
        return value.lower() in ("1", "true", "yes")
    return bool(value)


def set_value(key: str, value: object) -> None:
    """Store one setting at once."""
    s = settings()
    s.setValue(key, value)
    s.sync()


RESOURCES = Path(__file__).resolve().parent.parent / "resources"
ICONS = RESOURCES / "icons"

STATUS_COLORS = {
    "problem": "#e5484d",
    "verified": "#30a46c",
    "corrected": "#f5a524",
    "accepted": "#8e4ec6",
    "labelled": "#8b8d98",
    "unlabelled": "#8b8d98",
    "proposed": "#38bdf8",  # sky blue: the canvas draws proposals in it too
}


@cache
def icon(name: str) -> QIcon:
    """The icon ``resources/icons/<name>.svg`` (an empty icon when missing)."""
    path = ICONS / f"{name}.svg"
    return QIcon(str(path)) if path.is_file() else QIcon()


@cache
def status_icon(status: str, size: int = 14) -> QIcon:
    """A coloured dot for an item status; hollow for 'unlabelled', a ring and dot for 'proposed', with a cross
    for 'problem'."""
    ratio = 2
    pix = QPixmap(size * ratio, size * ratio)
    pix.setDevicePixelRatio(ratio)
    pix.fill(Qt.GlobalColor.transparent)
    p = QPainter(pix)
    p.setRenderHint(QPainter.RenderHint.Antialiasing)
    color = QColor(STATUS_COLORS.get(status, "#8b8d98"))
    c, r = QPointF(size / 2, size / 2), size / 2 - 2
    if status in ("unlabelled", "proposed"):
        p.setPen(QPen(color, 1.6))
        p.setBrush(Qt.BrushStyle.NoBrush)
    else:
        p.setPen(QPen(color.darker(130), 1))
        p.setBrush(color)
    p.drawEllipse(c, r, r)
    if status == "proposed":  # a ring around a dot: no label yet, but a prediction to accept
        p.setPen(Qt.PenStyle.NoPen)
        p.setBrush(color)
        p.drawEllipse(c, r * 0.4, r * 0.4)
    elif status == "problem":
        p.setPen(QPen(QColor("white"), 1.6, Qt.PenStyle.SolidLine, Qt.PenCapStyle.RoundCap))
        d = r * 0.45
        p.drawLine(QPointF(c.x() - d, c.y() - d), QPointF(c.x() + d, c.y() + d))
        p.drawLine(QPointF(c.x() - d, c.y() + d), QPointF(c.x() + d, c.y() - d))
    elif status == "verified":
        p.setPen(
            QPen(
                QColor("white"),
                1.6,
                Qt.PenStyle.SolidLine,
                Qt.PenCapStyle.RoundCap,
                Qt.PenJoinStyle.RoundJoin,
            )
        )
        p.drawPolyline(
            [
                QPointF(c.x() - r * 0.45, c.y()),
                QPointF(c.x() - r * 0.1, c.y() + r * 0.4),
                QPointF(c.x() + r * 0.5, c.y() - r * 0.35),
            ]
        )
    p.end()
    return QIcon(pix)


def stylesheet() -> str:
    """The app's stylesheet (``resources/style.qss``), empty when missing."""
    path = RESOURCES / "style.qss"
    return path.read_text(encoding="utf-8") if path.is_file() else ""
