"""Before Qt starts on X11: are the system libraries its xcb plugin needs there? Qt's own failure ("could not load
the Qt platform plugin xcb", then an abort) names no package; this names the apt packages to install."""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Callable, Mapping

# The xcb plugin's libraries that minimal systems lack, by soname, with the Debian/Ubuntu package holding each.
XCB_LIBS = {
    "libxcb-cursor.so.0": "libxcb-cursor0",
    "libxcb-icccm.so.4": "libxcb-icccm4",
    "libxcb-keysyms.so.1": "libxcb-keysyms1",
    "libxcb-image.so.0": "libxcb-image0",
    "libxcb-render-util.so.0": "libxcb-render-util0",
    "libxcb-shape.so.0": "libxcb-shape0",
    "libxcb-randr.so.0": "libxcb-randr0",
    "libxcb-xkb.so.1": "libxcb-xkb1",
    "libxkbcommon-x11.so.0": "libxkbcommon-x11-0",
}


def _loads(soname: str) -> bool:
    try:
        ctypes.CDLL(soname)
    except OSError:
        return False
    return True


def uses_xcb(env: Mapping[str, str]) -> bool:
    """Whether Qt will pick its X11 (xcb) platform plugin in this environment."""
    if not sys.platform.startswith("linux"):
        return False
    chosen = env.get("QT_QPA_PLATFORM", "")
    if chosen:
        return chosen.split(";")[0].split(":")[0] == "xcb"
    return bool(env.get("DISPLAY")) and not env.get("WAYLAND_DISPLAY")


def missing_xcb(env: Mapping[str, str] | None = None, loads: Callable[[str], bool] = _loads) -> list[str]:
    """The apt packages to install before the X11 window can open ([] when none are missing or X11 is not used)."""
    if not uses_xcb(os.environ if env is None else env):
        return []
    return [pkg for soname, pkg in XCB_LIBS.items() if not loads(soname)]


def xcb_message(packages: list[str]) -> str:
    """The one line said instead of Qt's abort."""
    return (
        f"imgreg-gui: the X11 window needs system libraries that are missing; install them with: "
        f"sudo apt-get install {' '.join(packages)}  (or run headless with QT_QPA_PLATFORM=offscreen)"
    )
