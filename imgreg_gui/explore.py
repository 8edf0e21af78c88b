"""Exploring by likeness: the Similar items and Embedding map docks over the app state, with the Find similar (S),
Embedding map and Sort by score actions. Embeddings come from ``EmbeddingSource`` (stored, or an ``imgreg embed``
child); a click on a thumbnail or a point makes that item current, a map selection or *Show in item list* sets
the state's item filter."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PySide6.QtCore import QObject, Qt, QTimer
from PySide6.QtWidgets import QDockWidget, QHeaderView, QMainWindow, QTreeView, QWidget

from imgreg_gui.actions import Actions
from imgreg_gui.embedding_map import EmbeddingMap
from imgreg_gui.model.items import COL_SCORE
from imgreg_gui.model.state import AppState
from imgreg_gui.similar_panel import Neighbour, SimilarPanel
from imgreg_gui.similarity import EmbeddingSource, Loaded

RIGHT = Qt.DockWidgetArea.RightDockWidgetArea
BOTTOM = Qt.DockWidgetArea.BottomDockWidgetArea
AddDock = Callable[[QWidget, str, Qt.DockWidgetArea], QDockWidget]
K = 12


class ExploreController(QObject):
    """Owns the Similar items and Embedding map docks of one window and wires the actions ``similar``,
    ``embedding_map`` and ``sort_score`` of its action table."""

    def __init__(
        self,
        state: AppState,
        window: QMainWindow,
        acts: Actions,
        add_dock: AddDock,
        item_view: QTreeView,
        neighbours: dict[str, QDockWidget] | None = None,
    ) -> None:
        super().__init__(window)
        self.state = state
        self.window = window
        self.source = EmbeddingSource(state, self)
        self.similar = SimilarPanel()
        self.map = EmbeddingMap()
        self.docks = {
            "Similar items": add_dock(self.similar, "Similar items", BOTTOM),
            "Embedding map": add_dock(self.map, "Embedding map", RIGHT),
        }
        near = neighbours or {}
        for title, beside in (("Similar items", "Runs"), ("Embedding map", "Review")):
            if beside in near:  # share the area as tabs: first-run layout; a remembered one replaces it
                window.tabifyDockWidget(near[beside], self.docks[title])
        for front in ("Training curves", "Train"):
            if front in near:
                near[front].raise_()
        self._query: str | None = None
        self._want_map = False
        self._map_of: Loaded | None = None  # the embeddings the map shows
        self._filter_from_similar = False
        self.wait_in_screenshots = False  # app --explore: the screenshot waits for idle()
        self._values_stale = False  # labels or errors changed while the map was hidden
        self.item_view = item_view
        item_view.model().modelReset.connect(self._fit_score_column)

        acts.similar.triggered.connect(lambda: self.find_similar())
        acts.embedding_map.triggered.connect(lambda: self.show_map())
        acts.sort_score.triggered.connect(self.sort_by_score)
        self.acts = acts
        self.similar.item_clicked.connect(state.set_current)
        self.similar.show_in_list.connect(self._toggle_list_filter)
        self.similar.cancel_requested.connect(self.source.cancel)
        self.map.item_clicked.connect(state.set_current)
        state.current_changed.connect(self.map.set_current)
        self.map.selection_changed.connect(self._on_map_selection)
        self.docks["Embedding map"].visibilityChanged.connect(self._on_map_visible)
        self.source.ready.connect(self._on_ready)
        self.source.progress.connect(self._on_progress)
        self.source.message.connect(self._on_message)
        self.source.failed.connect(self._on_failed)
        state.dataset_changed.connect(self._on_dataset)
        state.active_run_changed.connect(self._on_active_run)
        # A run of edits recolours once (about 13 ms at 15k points), and a hidden map not at all.
        self._recolour = QTimer(self, singleShot=True, interval=300)
        self._recolour.timeout.connect(self._update_map_values)
        state.records_changed.connect(lambda _names: self._recolour.start())
        state.records_changed.connect(self._refresh_similar)
        state.current_changed.connect(lambda _n: self._update_actions())
        state.item_filter_changed.connect(self._on_filter_changed)
        self._update_actions()

    # -- find similar ----------------------------------------------------------------------------------

    def find_similar(self, name: str | None = None) -> bool:
        """Fill the Similar items dock with the nearest items of ``name`` (the current item by default)."""
        name = name or self.state.current
        if name is None or not self.state.is_open:
            return False
        dock = self.docks["Similar items"]
        dock.show()
        dock.raise_()
        self._query = name
        self.similar.set_message(f"Finding the items most like {name}...")
        self._request()
        return True

    def _request(self) -> None:
        names = [self._query] if self._query else []
        if not self.source.want(names) and not self.source.busy:
            self.similar.set_message("Open a dataset first")

    def _show_similar(self, loaded: Loaded) -> None:
        name, st = self._query, self.state
        if name is None:
            return
        if name not in loaded.emb:
            self.source.want([name])  # a new or changed image: embed it first
            return
        self._query = None
        rows = []
        for other, dist in loaded.index.neighbours(name, K):
            it = st.item(other)
            if it is not None:
                rows.append(Neighbour(other, str(it.path), dist, st.effective(other), st.errors.get(other)))
        self.similar.set_results(name, rows, loaded.source, st.effective(name), st.errors.get(name))

    def _refresh_similar(self, names: list[str] | None = None) -> None:
        """Labels and errors of the shown query and neighbours again (after an edit, an undo, another run)."""
        st, shown = self.state, self.similar.shown()
        for n in shown if names is None else set(names) & set(shown):
            self.similar.update_item(n, st.effective(n), st.errors.get(n))

    def _toggle_list_filter(self) -> None:
        """Show only the query and its neighbours in the item list (pressed again: every item)."""
        if self._filter_from_similar and self.state.item_filter is not None:
            self.state.set_item_filter(None)
            return
        query = self.similar.query
        if query is None:
            return
        self.state.set_item_filter([query, *self.similar.names()], f"similar to {query.rsplit('/', 1)[-1]}")
        self._filter_from_similar = True
        self.similar.list_btn.setText("Show all items")

    def _on_filter_changed(self) -> None:
        if self.state.item_filter is None or not self.state.item_filter_label.startswith("similar to"):
            self._filter_from_similar = False
            self.similar.list_btn.setText("Show in item list")

    # -- embedding map ---------------------------------------------------------------------------------

    def show_map(self) -> None:
        """Show the Embedding map dock (computing the map when needed)."""
        dock = self.docks["Embedding map"]
        dock.show()
        dock.raise_()
        self._ensure_map(compute=True)

    def _on_map_visible(self, on: bool) -> None:
        if on and self._values_stale:
            self._update_map_values()
        if on:
            self._ensure_map()

    def _ensure_map(self, compute: bool = False) -> None:
        """Show the stored embeddings on the map; ``compute``: run ``imgreg embed`` when none are stored (only on
        the user's request, never because the dock became visible)."""
        if not self.state.is_open:
            return
        loaded = self.source.loaded
        if loaded is not None and loaded is self._map_of:
            return
        self._want_map = True
        self.map.set_message("Reading embeddings...")
        self.source.want(compute=compute)

    def _show_map(self, loaded: Loaded) -> None:
        self._want_map = False
        st = self.state
        names = [n for n in loaded.emb.names if st.item(n) is not None]
        if not names:
            self.map.set_message("No item of this dataset has an embedding yet")
            return
        self._map_of = loaded
        sub = loaded.emb.subset(names)
        paths = {n: str(it.path) for n in names if (it := st.item(n)) is not None}
        labels, errors, groups, scores = self._map_values(names)
        self.map.set_items(names, paths, labels, errors, groups, scores)
        self.map.set_current(self.state.current)
        self.map.compute(np.asarray(sub.vecs))

    def _map_values(self, names: list[str]) -> tuple[dict, dict, dict, dict]:
        st = self.state
        labels = {n: st.effective(n) for n in names}
        groups = {n: it.group for n in names if (it := st.item(n)) is not None}
        scores = {n: p.score for n, p in st.preds.items() if p.score is not None}
        return labels, dict(st.errors), groups, scores

    def _update_map_values(self) -> None:
        if not self.docks["Embedding map"].isVisible():
            self._values_stale = bool(self.map.names)
            return
        self._values_stale = False
        if self.map.names:
            self.map.set_values(*self._map_values(self.map.names))

    def _on_map_selection(self, names: set) -> None:
        if names:
            self.state.set_item_filter(names, f"{len(names)} selected on the embedding map")
        elif self.state.item_filter is not None and "embedding map" in self.state.item_filter_label:
            self.state.set_item_filter(None)

    # -- the source's answers --------------------------------------------------------------------------

    def _on_ready(self, loaded: Loaded) -> None:
        self.similar.set_progress(None)
        if self._query is not None:
            self._show_similar(loaded)
        if self._want_map or (self.docks["Embedding map"].isVisible() and loaded is not self._map_of):
            self._show_map(loaded)

    def _on_progress(self, done: int, total: int) -> None:
        self.similar.set_progress(done, total)
        self.map.set_message(f"Computing embeddings: {done} of {total}")

    def _on_message(self, text: str) -> None:
        if self._query is not None:
            self.similar.set_message(text)
        self.map.set_message(text)

    def _on_failed(self, text: str) -> None:
        if not self._want_map and self._query is None:
            return
        self.similar.set_progress(None)
        if self._query is not None:
            self.similar.set_message(text)
        self.map.set_message(text)
        self._query, self._want_map = None, False

    # -- following the state ---------------------------------------------------------------------------

    def _on_dataset(self) -> None:
        self._query, self._map_of = None, None
        self.similar.set_message("Find similar (S): the items most like the current one")
        self.map.set_items([], {}, {}, {}, {})
        self.map.set_points(np.zeros((0, 2), np.float32))
        self.map.set_message("")
        self._update_actions()
        if self.docks["Embedding map"].isVisible():
            self._ensure_map()

    def _on_active_run(self, _run: object) -> None:
        self._update_actions()
        self._refresh_similar()  # the errors are the new run's
        if self.map.names and self.source.loaded is None and self.docks["Embedding map"].isVisible():
            self._ensure_map()  # this run has embeddings of its own: show them
        self._update_map_values()

    def _update_actions(self) -> None:
        st = self.state
        self.acts.similar.setEnabled(st.is_open and st.current is not None)
        self.acts.embedding_map.setEnabled(st.is_open)
        self.acts.sort_score.setEnabled(any(p.score is not None for p in st.preds.values()))

    def idle(self) -> bool:
        """Whether nothing is pending: no embeddings read or computed, map projected, thumbnails loaded."""
        projecting = bool(self.map.names) and len(self.map.xy) != len(self.map.names)
        waiting = self._query is not None or self._want_map or self.source.busy or projecting
        return not waiting and self.similar.thumbnails_loaded()

    def sort_by_score(self) -> None:
        """Sort the item list by label-quality score, largest doubt first."""
        self.item_view.sortByColumn(COL_SCORE, Qt.SortOrder.DescendingOrder)

    def _fit_score_column(self) -> None:
        """The Score column (there while the active run has scores) takes only the room its numbers need."""
        if self.item_view.model().columnCount() > COL_SCORE:
            mode = QHeaderView.ResizeMode.ResizeToContents
            self.item_view.header().setSectionResizeMode(COL_SCORE, mode)

    def shutdown(self) -> None:
        """Stop an embedding child (the window is closing)."""
        self.source.shutdown()
