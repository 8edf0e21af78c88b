"""Start-up on X11 without the xcb plugin's system libraries: one line naming the apt packages, exit 2."""

from __future__ import annotations

from imgreg_gui import app
from imgreg_gui.platform_check import missing_xcb, uses_xcb


def test_which_platform_uses_xcb():
    assert uses_xcb({"DISPLAY": ":0"}) and uses_xcb({"QT_QPA_PLATFORM": "xcb"})
    assert not uses_xcb({"QT_QPA_PLATFORM": "offscreen", "DISPLAY": ":0"})
    assert not uses_xcb({"DISPLAY": ":0", "WAYLAND_DISPLAY": "wayland-0"}) and not uses_xcb({})


def test_missing_libraries_name_their_packages():
    absent = {"libxcb-cursor.so.0", "libxcb-keysyms.so.1"}
    assert missing_xcb({"DISPLAY": ":0"}, lambda so: so not in absent) == [
        "libxcb-cursor0",
        "libxcb-keysyms1",
    ]
    assert missing_xcb({"QT_QPA_PLATFORM": "offscreen"}, lambda so: False) == []


def test_main_exits_2_with_one_line(monkeypatch, capsys):
    monkeypatch.setattr(app, "missing_xcb", lambda: ["libxcb-cursor0"])
    assert app.main([]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "sudo apt-get install libxcb-cursor0" in err
