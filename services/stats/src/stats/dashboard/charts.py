"""Server-rendered SVG charts (pygal): no script, no CDN; the page inlines them."""

from __future__ import annotations

from datetime import datetime

import re

import pygal
from pygal.style import Style

from lienthong.calendar import VN_TZ

# Okabe-Ito colours: distinguishable with the common colour-vision deficiencies.
STYLE = Style(background="white", plot_background="white", foreground="#222", foreground_strong="#111",
              foreground_subtle="#666", colors=("#0072B2", "#009E73", "#D55E00", "#CC79A7", "#E69F00", "#56B4E9"),
              font_family="system-ui, sans-serif", label_font_size=11, legend_font_size=12, title_font_size=14)


def _chart(title: str, labels: list[str]) -> pygal.Line:
    chart = pygal.Line(style=STYLE, width=640, height=260, show_dots=len(labels) <= 40, dots_size=2, js=[],
                       disable_xml_declaration=True, x_label_rotation=30, show_minor_x_labels=False,
                       truncate_legend=-1, legend_at_bottom=True, legend_at_bottom_columns=4, include_x_axis=True,
                       print_values=False, no_data_text="Chưa có dữ liệu")
    chart.title = title
    chart.x_labels = labels
    chart.x_labels_major = labels[:: max(len(labels) // 8, 1)]
    return chart


# pygal writes its config into an inline <script> even without its tooltip scripts; the page needs neither.
_SCRIPT = re.compile(r"<script\b.*?</script>", re.DOTALL)


def _svg(chart: pygal.Line) -> str:
    return _SCRIPT.sub("", chart.render(is_unicode=True))


def received_resolved(series: list[dict]) -> str:
    """Daily received and resolved (on time, late) from the timeseries endpoint's buckets."""
    chart = _chart("Tiếp nhận và giải quyết theo ngày", [b["from"][5:] for b in series])
    chart.add("Tiếp nhận", [b["received"] for b in series])
    chart.add("Giải quyết đúng hạn", [b["resolved_on_time"] for b in series])
    chart.add("Giải quyết quá hạn", [b["resolved_late"] for b in series])
    return _svg(chart)


def lag(history: dict[str, list[tuple[float, int]]]) -> str:
    """Total lag per consumer group over the last minutes."""
    times = sorted({t for points in history.values() for t, _ in points})
    labels = [datetime.fromtimestamp(t, VN_TZ).strftime("%H:%M:%S") for t in times]
    chart = _chart("Độ trễ tiêu thụ (lag) theo nhóm", labels)
    for group, points in sorted(history.items()):
        by_time = dict(points)
        chart.add(group, [by_time.get(t) for t in times])
    return _svg(chart)
