"""imgreg_gui: the PySide6 application."""
