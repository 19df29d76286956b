"""The napari extra runs on Qt6: no PyQt5 fallback, no deprecation notice (run with ``xvfb-run -a``)."""

from __future__ import annotations


def test_napari_runs_on_qt6_without_the_pyqt5_deprecation_notice(make_napari_viewer, qtbot) -> None:
    import qtpy
    from napari.utils.notifications import notification_manager

    assert qtpy.QT6, f"napari runs on {qtpy.API_NAME} {qtpy.QT_VERSION}; the napari extra installs PyQt6"
    before = len(notification_manager.records)
    viewer = make_napari_viewer(show=True)  # napari 0.9 notifies on the first shown window under PyQt5
    _, widget = viewer.window.add_plugin_dock_widget("segnet-domains", "SegNet segmentation")
    qtbot.wait(50)
    assert widget.native.isVisible()
    notes = [str(n.message) for n in notification_manager.records[before:]]
    assert not [m for m in notes if "PyQt5" in m or "deprecated" in m], notes
