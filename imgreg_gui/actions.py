"""The main window's actions, menus and toolbar, declared in tables (each action with a shortcut and a tooltip).

``ACTIONS`` lists every action once; ``MENUS`` and ``TOOLBAR`` say where each goes. The builders take the slots by
action key (``{"open": win.choose_dataset, ...}``) and return what they create; a new feature adds a row and a
slot, nothing else.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QDoubleSpinBox, QLabel, QMenu, QMenuBar, QSizePolicy, QToolBar, QWidget

from imgreg_gui.settings import icon

Keys = str | QKeySequence.StandardKey | list
SK = QKeySequence.StandardKey


@dataclass(frozen=True)
class Act:
    """One action: its key (the slot's key too), text, shortcuts, tip, icon, and whether it is a toggle."""

    key: str
    text: str
    keys: Keys | None = None
    tip: str = ""
    icon: str | None = None
    checkable: bool = False
    checked: bool = False
    on_canvas: bool = False  # arrows and Tab belong to the image: elsewhere they keep their usual meaning


VALUE_TIP = "The item's value (scalar datasets): type a number and press Enter to correct it (Esc cancels)"
NUDGE_TIP = "Move the label; a run of nudges is one undo step"
NUDGES = (
    ("left", "Left", -1, 0),
    ("right", "Right", 1, 0),
    ("up", "Up", 0, -1),
    ("down", "Down", 0, 1),
)
ACTIONS: tuple[Act, ...] = (
    Act("open", "&Open dataset…", SK.Open,
        "Open a dataset folder (Biwi, points CSV, UTKFace, scalar CSV or a plain image folder)", "open"),
    Act("reload", "&Reload dataset", "Ctrl+R",
        "Index the dataset folder again: new files appear, removed ones leave (their corrections are kept)", "reload"),
    Act("export", "&Export labels…", "Ctrl+E",
        "Save the effective labels (corrections included) as CSV, JSON, COCO keypoints or a YOLO-pose folder",
        "export"),
    Act("quit", "&Quit", SK.Quit, "Quit imgreg", "quit"),
    Act("undo", "&Undo", [QKeySequence("Ctrl+Z")], "Undo the last label edit", "undo"),
    Act("redo", "&Redo", [QKeySequence("Ctrl+Shift+Z"), QKeySequence("Ctrl+Y")], "Redo the edit just undone", "redo"),
    Act("accept", "&Accept prediction", ["Ctrl+Return", "Ctrl+Enter"],
        "Use the active run's prediction as this item's label", "accept"),
    Act("accept_proposal", "Accept &proposal", ["Return", "Enter"],
        "Make the proposal (the active run's prediction of an unlabelled item, sky-blue cross) its label; "
        "a labelled item keeps its label", "accept", on_canvas=True),
    Act("accept_suggestion", "Accept su&ggestion", "G",
        "Move the label to where the checks expect it (the dashed violet ghost marker; its tooltip says why)",
        "accept"),
    Act("revert", "Re&vert to original", "Ctrl+Backspace",
        "Drop the correction: the label from the dataset's files applies again", "revert"),
    Act("verify", "&Mark verified", "V", "Mark this item's label as checked by a person (press again to clear)",
        "verify"),
    Act("history", "Label &history…", "Ctrl+Shift+H",
        "Every change of this item's label: when, what, before and after"),
    Act("place", "&Place label", "C", "The next click on the image puts the label there (Ctrl+click does it any time)",
        "place", checkable=True),
    *(Act(f"nudge_{k}", f"Nudge {k} 1 px", key, NUDGE_TIP, on_canvas=True) for k, key, _, _ in NUDGES),
    *(Act(f"nudge_{k}10", f"Nudge {k} 10 px", f"Shift+{key}", NUDGE_TIP, on_canvas=True) for k, key, _, _ in NUDGES),
    Act("next_point", "Next &point", "Tab", "Select the next point of a multi-point label", on_canvas=True),
    Act("next", "&Next item", ["D", "PgDown"], "Go to the next item in the list", "next"),
    Act("prev", "P&revious item", ["A", "PgUp"], "Go to the previous item in the list", "prev"),
    Act("next_group", "Next &group", ["]", "Ctrl+PgDown"], "Go to the first item of the next group", "next-group"),
    Act("prev_group", "Previous gro&up", ["[", "Ctrl+PgUp"], "Go to the first item of the previous group",
        "prev-group"),
    Act("first", "&First item", "Home", "Go to the first item in the list", "first"),
    Act("last", "&Last item", "End", "Go to the last item in the list", "last"),
    Act("find", "&Filter items…", SK.Find, "Type to filter the item list by name"),
    Act("zoom_in", "Zoom &in", ["+", "=", SK.ZoomIn], "Zoom in (the mouse wheel zooms around the cursor)", "zoom-in"),
    Act("zoom_out", "Zoom &out", ["-", SK.ZoomOut], "Zoom out", "zoom-out"),
    Act("fit", "&Fit to window", ["F", "Ctrl+0"], "Show the whole image", "fit"),
    Act("actual", "&Actual size", ["1", "Ctrl+1"], "One image pixel per screen pixel", "actual-size"),
    Act("show_label", "Show &label", "L", "Show or hide the label (green cross)", "show-label", True, True),
    Act("show_pred", "Show &prediction", "P", "Show or hide the active run's prediction (red ring)", "show-pred",
        True, True),
    Act("show_line", "Show &error line", "E", "Show or hide the dashed line and distance between label and prediction",
        "show-line", True, True),
    Act("sort_error", "Sort by e&rror", "Ctrl+Shift+E",
        "List items by prediction error, largest first (needs an active run)"),
    Act("sort_name", "Sort by &name", None, "List items by name"),
    Act("sort_score", "Sort by label-quality &score", "Ctrl+Shift+S",
        "List items by the active run's label-quality score, largest doubt first (needs a run ranked by imgreg rank)"),
    Act("similar", "Find &similar items", ["S", "Ctrl+K"],
        "Show the items most like the current one (embeddings; computed with imgreg embed when missing)"),
    Act("embedding_map", "Embedding &map", "Ctrl+M",
        "Every item as a point of a 2-D map of its embedding; hover, click, or drag a box to filter the list"),
    Act("shortcuts", "&Keyboard shortcuts", ["F1", "?"], "List every keyboard shortcut", "keyboard"),
    Act("about", "&About imgreg", None, "Version, licence and data credits", "help"),
)  # fmt: skip
VIEW_TOGGLES = ("show_label", "show_pred", "show_line")
# Menu titles -> entries: an action key, "-" (separator), "Sub menu:" followed by its keys, or "@name" (an empty
# submenu the window fills: recent datasets, dock panels).
NUDGE_KEYS = [f"nudge_{k}" for k, *_ in NUDGES] + [f"nudge_{k}10" for k, *_ in NUDGES]
MENUS: dict[str, list] = {
    "&File": ["open", "@Open &recent", "reload", "-", "export", "-", "quit"],
    "&Edit": ["undo", "redo", "-", "accept", "accept_proposal", "accept_suggestion", "revert", "verify", "history", "place", ("&Nudge label", NUDGE_KEYS), "next_point"],
    "&Go": ["next", "prev", "-", "next_group", "prev_group", "first", "last", "-", "find", "similar"],
    "&View": ["zoom_in", "zoom_out", "fit", "actual", "-", *VIEW_TOGGLES, "-", "sort_name", "sort_error",
              "sort_score", "-", "embedding_map", "@&Panels"],
    "&Help": ["shortcuts", "about"],
}  # fmt: skip
TOOLBAR = ["open", "-", "first", "prev_group", "prev", "next", "next_group", "last", "-", "undo", "redo", "-",
           "place", "accept", "revert", "verify", "@value", "-", "zoom_out", "fit", "actual", "zoom_in", "-",
           *VIEW_TOGGLES, "@spacer", "shortcuts"]  # fmt: skip


class Actions:
    """A namespace of QActions by short name (``acts.next``, ``acts.all["next"]``), in creation order."""

    def __init__(self) -> None:
        self.all: dict[str, QAction] = {}

    def __getattr__(self, name: str) -> QAction:
        try:
            return self.__dict__["all"][name]
        except KeyError:
            raise AttributeError(name) from None


@dataclass
class Menus:
    """The menus by title without '&' (``File``, ...) and the submenus the window fills, by name."""

    bar: QMenuBar
    by_title: dict[str, QMenu] = field(default_factory=dict)
    subs: dict[str, QMenu] = field(default_factory=dict)

    def add(self, title: str, before: str | None = "Help") -> QMenu:
        """A new top-level menu (``&Training``), placed before ``before``; an existing one is returned as is."""
        plain = title.replace("&", "")
        if plain in self.by_title:
            return self.by_title[plain]
        m = QMenu(title, self.bar)
        m.setToolTipsVisible(True)
        anchor = self.by_title.get(before or "")
        if anchor is not None:
            self.bar.insertMenu(anchor.menuAction(), m)
        else:
            self.bar.addMenu(m)
        self.by_title[plain] = m
        return m


@dataclass
class ValueBox:
    """The toolbar's value field for scalar datasets, and the toolbar actions that show or hide it."""

    box: QDoubleSpinBox
    actions: list[QAction]

    def set_visible(self, on: bool) -> None:
        """Show the field (scalar datasets) or hide it."""
        for a in self.actions:
            a.setVisible(on)


def shortcut_text(action: QAction) -> str:
    """The action's shortcuts as the user reads them (``Ctrl+Z, Ctrl+Y``)."""
    return ", ".join(s.toString(QKeySequence.SequenceFormat.NativeText) for s in action.shortcuts())


def make_action(spec: Act, parent: QWidget, slot: Callable | None) -> QAction:
    """A QAction from its table row: shortcuts, tooltip with the keys, status tip, icon, wired to ``slot``."""
    act = QAction(spec.text, parent)
    act.setObjectName(f"action_{spec.key}")
    if spec.keys is not None:
        seqs = spec.keys if isinstance(spec.keys, list) else [spec.keys]
        act.setShortcuts([s if isinstance(s, QKeySequence) else QKeySequence(s) for s in seqs])
    context = (
        Qt.ShortcutContext.WidgetWithChildrenShortcut if spec.on_canvas else Qt.ShortcutContext.WindowShortcut
    )
    act.setShortcutContext(context)
    if spec.icon:
        act.setIcon(icon(spec.icon))
    if spec.checkable:
        act.setCheckable(True)
        act.setChecked(spec.checked)
    tip = spec.tip or spec.text.replace("&", "").rstrip("…")
    sc = shortcut_text(act)
    act.setToolTip(f"{tip} ({sc})" if sc else tip)
    act.setStatusTip(tip)
    if slot is not None:
        (act.toggled if spec.checkable else act.triggered).connect(slot)
    return act


def build_actions(window: QWidget, canvas: QWidget, slots: Mapping[str, Callable]) -> Actions:
    """Every action of ``ACTIONS``, wired to ``slots[key]``; shortcuts work even when menus and toolbar are hidden."""
    a = Actions()
    for spec in ACTIONS:
        act = make_action(spec, window, slots.get(spec.key))
        (canvas if spec.on_canvas else window).addAction(act)
        a.all[spec.key] = act
    return a


def build_menus(bar: QMenuBar, a: Actions) -> Menus:
    """The menus of ``MENUS`` on ``bar``; returns them (and the named empty submenus)."""
    menus = Menus(bar)

    def fill(m: QMenu, entries: list) -> None:
        for e in entries:
            if e == "-":
                m.addSeparator()
            elif isinstance(e, tuple):
                fill(m.addMenu(str(e[0])), e[1])
            elif e.startswith("@"):
                sub = m.addMenu(e[1:])
                if e == "@Open &recent":
                    sub.setIcon(icon("open"))
                menus.subs[e[1:].replace("&", "")] = sub
            else:
                m.addAction(a.all[e])

    for title, entries in MENUS.items():
        fill(menus.add(title, before=None), entries)
    return menus


def build_toolbar(parent: QWidget, a: Actions) -> tuple[QToolBar, ValueBox]:
    """The main toolbar of ``TOOLBAR``, and its value field for scalar datasets (hidden until one is open)."""
    tb = QToolBar("Main toolbar", parent)
    tb.setObjectName("MainToolbar")
    tb.setIconSize(QSize(20, 20))
    tb.setMovable(False)
    tb.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonIconOnly)
    box = QDoubleSpinBox(tb)
    box.setRange(-1e9, 1e9)
    box.setDecimals(2)
    box.setKeyboardTracking(False)
    box.setMinimumWidth(90)
    box.setToolTip(VALUE_TIP)
    value = ValueBox(box, [])
    for e in TOOLBAR:
        if e == "-":
            tb.addSeparator()
        elif e == "@value":
            value.actions = [tb.addWidget(QLabel(" Value ", tb)), tb.addWidget(box)]
        elif e == "@spacer":
            spacer = QWidget(tb)
            spacer.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
            tb.addWidget(spacer)
        else:
            tb.addAction(a.all[e])
    value.set_visible(False)
    return tb, value


def insert_after(host: QWidget, anchor: QAction | None, act: QAction) -> None:
    """Put ``act`` right after ``anchor`` in a menu or toolbar (at the end when the anchor is absent)."""
    after = host.actions()
    i = after.index(anchor) + 1 if anchor in after else len(after)
    if i < len(after):
        host.insertAction(after[i], act)
    else:
        host.addAction(act)
