"""The visual report: figures, overlays, findings and a self-contained HTML page."""

from polypseg.report.html import make_report

__all__ = ["make_report"]
