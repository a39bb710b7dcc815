"""Server-rendered SVG plots for the pages: spider plot, sum-of-diameters curve, waterfall, incidence bars.

Hospitals' networks are closed, so nothing here needs a browser library or a CDN: every function returns one
self-contained ``<svg>`` string (text escaped, colours as presentation attributes so that a strict
Content-Security-Policy without inline styles still shows them). The inputs are plain numbers and dates that
the callers (``service.api.ui``, ``service.dashboard.quality``) take from stored assessments; nothing clinical is decided
here. Each mark carries ``data-*`` attributes with the value it draws, so that tests (and screen readers, via
``<title>``) can check what is shown against the assessment.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from html import escape

MINUS = "\u2212"

LESION_COLOURS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#999933")
"""Okabe–Ito palette (distinguishable with the common colour-vision deficiencies), then two extra."""

LESION_DASHES = ("", "8 3", "2 3", "10 3 2 3", "5 5", "1 3", "12 4", "4 2 1 2")
"""One dash pattern per lesion line, so that lines lying on each other (lesions shrinking alike) stay apart."""
LESION_MARKERS = ("circle", "square", "triangle", "diamond", "triangle-down", "cross", "circle", "square")
"""One marker shape per lesion; drawn largest first, so that coinciding points show every shape."""
LABEL_GAP = 12.0
"""Smallest vertical distance between two text labels (px at font size 10–11)."""

CATEGORY_COLOURS = {
    "response": "#0072B2",
    "stable": "#8C8C8C",
    "progression": "#D55E00",
    "unconfirmed": "#E69F00",
    "not-evaluable": "#CCCCCC",
}
"""Fill per response class (see ``service.api.ui.category_class``)."""

AXIS = "#444444"
GRID = "#E3E3E3"
FONT = 'font-family="system-ui, -apple-system, Segoe UI, Roboto, sans-serif"'


# ---------------------------------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------------------------------
def _attr(value: object) -> str:
    return escape(str(value), quote=True)


def _num(value: float) -> str:
    """Coordinates at 0.1 px."""
    text = f"{value:.1f}"
    return "0.0" if text == "-0.0" else text


def signed(value: float, places: int = 2, unit: str = " %") -> str:
    """``+5.17 %``, ``−30.00 %`` (typographic minus), ``0.00 %``."""
    text = f"{abs(value):.{places}f}"
    if round(value, places) == 0:
        return f"{text}{unit}"
    return f"{'+' if value > 0 else MINUS}{text}{unit}"


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values covering [low, high] (1, 2, 2.5 or 5 × a power of ten apart)."""
    if high <= low:
        high = low + 1
    raw = (high - low) / max(count, 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    first, last = math.floor(low / step + 1e-9), math.ceil(high / step - 1e-9)
    return [round(i * step, 10) for i in range(first, last + 1)]


@dataclass(frozen=True)
class _Frame:
    """Plot area inside the SVG, and the linear maps from data to pixels."""

    width: float
    height: float
    left: float
    right: float
    top: float
    bottom: float
    x_min: float
    x_max: float
    y_min: float
    y_max: float

    @property
    def inner_width(self) -> float:
        return self.width - self.left - self.right

    @property
    def inner_height(self) -> float:
        return self.height - self.top - self.bottom

    def x(self, value: float) -> float:
        span = (self.x_max - self.x_min) or 1.0
        return self.left + (value - self.x_min) / span * self.inner_width

    def y(self, value: float) -> float:
        span = (self.y_max - self.y_min) or 1.0
        return self.top + (self.y_max - value) / span * self.inner_height

    @property
    def y_scale(self) -> float:
        """Pixels per data unit on the y axis."""
        return self.inner_height / ((self.y_max - self.y_min) or 1.0)


def _svg(
    frame: _Frame,
    title: str,
    description: str,
    body: Iterable[str],
    *,
    css_class: str,
    data: dict[str, object] | None = None,
) -> str:
    attrs = "".join(f' data-{k}="{_attr(v)}"' for k, v in (data or {}).items())
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="plot {_attr(css_class)}" role="img" '
        f'viewBox="0 0 {_num(frame.width)} {_num(frame.height)}" width="{_num(frame.width)}" '
        f'height="{_num(frame.height)}" aria-label="{_attr(title)}"{attrs} {FONT} font-size="11">'
        f"<title>{escape(title)}</title><desc>{escape(description)}</desc>" + "".join(body) + "</svg>"
    )


def _text(
    x: float,
    y: float,
    text: str,
    *,
    anchor: str = "start",
    css: str = "",
    size: int | None = None,
    rotate: bool = False,
    fill: str = AXIS,
) -> str:
    extra = f' class="{_attr(css)}"' if css else ""
    if size:
        extra += f' font-size="{size}"'
    if rotate:
        extra += f' transform="rotate(-90 {_num(x)} {_num(y)})"'
    return f'<text x="{_num(x)}" y="{_num(y)}" text-anchor="{anchor}" fill="{fill}"{extra}>{escape(text)}</text>'


def _line(
    x1: float,
    y1: float,
    x2: float,
    y2: float,
    *,
    stroke: str = AXIS,
    width: float = 1,
    dash: str = "",
    css: str = "",
    data: dict[str, object] | None = None,
    title: str = "",
) -> str:
    attrs = f' stroke-dasharray="{dash}"' if dash else ""
    attrs += f' class="{_attr(css)}"' if css else ""
    attrs += "".join(f' data-{k}="{_attr(v)}"' for k, v in (data or {}).items())
    inner = f"<title>{escape(title)}</title>" if title else ""
    return (
        f'<line x1="{_num(x1)}" y1="{_num(y1)}" x2="{_num(x2)}" y2="{_num(y2)}" stroke="{stroke}" '
        f'stroke-width="{width}"{attrs}>{inner}</line>'
    )


def _reference_line(frame: _Frame, value: float, stroke: str) -> str:
    """A criterion's threshold as a dashed line across the plot at ``value`` %."""
    y = frame.y(value)
    return _line(
        frame.left,
        y,
        frame.width - frame.right,
        y,
        stroke=stroke,
        dash="4 3",
        css="reference-line",
        data={"value": value},
    )


def spread(
    positions: Sequence[float], gap: float = LABEL_GAP, low: float = -math.inf, high: float = math.inf
) -> list[float]:
    """Label positions moved apart as little as possible so that any two are at least ``gap`` apart, in the same
    order, kept within ``[low, high]`` where there is room."""
    if not positions:
        return []
    order = sorted(range(len(positions)), key=lambda i: positions[i])
    placed = [positions[i] for i in order]
    for k in range(1, len(placed)):
        placed[k] = max(placed[k], placed[k - 1] + gap)
    overshoot = placed[-1] - high
    if overshoot > 0:
        placed = [p - overshoot for p in placed]
        for k in range(len(placed) - 2, -1, -1):
            placed[k] = min(placed[k], placed[k + 1] - gap)
    if placed[0] < low:
        placed = [p + (low - placed[0]) for p in placed]
    out = [0.0] * len(positions)
    for k, i in enumerate(order):
        out[i] = placed[k]
    return out


def _marker(shape: str, x: float, y: float, size: float, colour: str, title: str) -> str:
    """A point mark of the given shape (white outline, so stacked marks stay visible)."""
    paint = f'fill="{colour}" stroke="#ffffff" stroke-width="1" class="marker" data-shape="{shape}"'
    inner = f"<title>{escape(title)}</title>"
    if shape == "circle":
        return f'<circle cx="{_num(x)}" cy="{_num(y)}" r="{_num(size)}" {paint}>{inner}</circle>'
    if shape == "square":
        side = size * 1.7
        return (
            f'<rect x="{_num(x - side / 2)}" y="{_num(y - side / 2)}" width="{_num(side)}" height="{_num(side)}" '
            f"{paint}>{inner}</rect>"
        )
    r = size * 1.25
    corners = {
        "triangle": ((0, -r), (r * 0.95, r * 0.7), (-r * 0.95, r * 0.7)),
        "triangle-down": ((0, r), (r * 0.95, -r * 0.7), (-r * 0.95, -r * 0.7)),
        "diamond": ((0, -r), (r, 0), (0, r), (-r, 0)),
        "cross": tuple(
            (
                r * math.cos(math.radians(a)) * (1 if k % 2 == 0 else 0.4),
                r * math.sin(math.radians(a)) * (1 if k % 2 == 0 else 0.4),
            )
            for k, a in enumerate(range(45, 405, 45))
        ),
    }[shape]
    points = " ".join(f"{_num(x + dx)},{_num(y + dy)}" for dx, dy in corners)
    return f'<polygon points="{points}" {paint}>{inner}</polygon>'


def _y_axis(frame: _Frame, ticks: Sequence[float], label: str, fmt) -> list[str]:
    out = []
    for tick in ticks:
        y = frame.y(tick)
        out.append(_line(frame.left, y, frame.width - frame.right, y, stroke=GRID))
        out.append(_text(frame.left - 6, y + 4, fmt(tick), anchor="end"))
    out.append(_line(frame.left, frame.top, frame.left, frame.height - frame.bottom))
    out.append(_text(14, frame.top + frame.inner_height / 2, label, anchor="middle", rotate=True))
    return out


def _empty(width: float, height: float, title: str, message: str, css_class: str) -> str:
    frame = _Frame(width, height, 0, 0, 0, 0, 0, 1, 0, 1)
    return _svg(
        frame, title, message, [_text(width / 2, height / 2, message, anchor="middle")], css_class=f"{css_class} empty"
    )


# ---------------------------------------------------------------------------------------------------------------
# Spider plot: percent change of each target lesion from baseline, over time
# ---------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SpiderSeries:
    """One lesion: ``(scan date, percent change from its baseline diameter)`` in date order."""

    lesion: str
    points: tuple[tuple[dt.date, float], ...]


def spider_plot(
    series: Sequence[SpiderSeries],
    *,
    reference_date: dt.date,
    reference_label: str,
    lines: Sequence[tuple[float, str]] = (),
    width: int = 640,
    height: int = 320,
) -> str:
    """One polyline per lesion; x = weeks since ``reference_date`` (therapy start, else baseline)."""
    title = "Spider plot: percent change of each target lesion from baseline"
    drawn = [s for s in series if s.points]
    if not drawn:
        return _empty(width, height, title, "No target lesion measured at baseline and follow-up.", "spider")
    weeks = [(day - reference_date).days / 7 for s in drawn for day, _ in s.points]
    values = [v for s in drawn for _, v in s.points] + [v for v, _ in lines] + [0.0]
    y_ticks = nice_ticks(min(values), max(values))
    x_ticks = nice_ticks(min(weeks + [0.0]), max(weeks + [1.0]), 6)
    frame = _Frame(width, height, 58, 175, 16, 40, x_ticks[0], x_ticks[-1], y_ticks[0], y_ticks[-1])
    body = _y_axis(frame, y_ticks, "Change from baseline (%)", lambda t: signed(t, 0, " %") if t else "0 %")
    for tick in x_ticks:
        x = frame.x(tick)
        body.append(_line(x, frame.top, x, frame.height - frame.bottom, stroke=GRID))
        body.append(_text(x, frame.height - frame.bottom + 14, f"{tick:g}".replace("-", MINUS), anchor="middle"))
    body.append(
        _text(frame.left + frame.inner_width / 2, frame.height - 6, f"Weeks since {reference_label}", anchor="middle")
    )
    for value, label in lines:
        y = frame.y(value)
        body.append(_reference_line(frame, value, "#777777"))
        # At the left, where every line still starts from 0 %: clear of the lines' ends and their names.
        body.append(_text(frame.left + 4, y - 4 if value >= 0 else y + 12, label, css="reference-label", size=10))
    zero = frame.y(0)
    body.append(_line(frame.left, zero, frame.width - frame.right, zero, stroke=AXIS))
    marks: list[str] = []
    ends: list[tuple[float, float]] = []
    for index, s in enumerate(drawn):
        colour = LESION_COLOURS[index % len(LESION_COLOURS)]
        dash = LESION_DASHES[index % len(LESION_DASHES)]
        shape = LESION_MARKERS[index % len(LESION_MARKERS)]
        size = max(2.4, 6.4 - 1.4 * index)
        coords = [(frame.x((day - reference_date).days / 7), frame.y(value)) for day, value in s.points]
        data = {
            "lesion": s.lesion,
            "points": len(s.points),
            "dates": " ".join(day.isoformat() for day, _ in s.points),
            "percent": " ".join(f"{v:.2f}" for _, v in s.points),
            "dash": dash or "solid",
            "marker": shape,
        }
        attrs = "".join(f' data-{k}="{_attr(v)}"' for k, v in data.items())
        dashed = f' stroke-dasharray="{dash}"' if dash else ""
        body.append(f'<g class="lesion-series"{attrs}>')
        body.append(
            f'<polyline class="lesion" fill="none" stroke="{colour}" stroke-width="2"{dashed} '
            f'points="{" ".join(f"{_num(x)},{_num(y)}" for x, y in coords)}"{attrs}>'
            f"<title>{escape(s.lesion)}</title></polyline>"
        )
        body.append("</g>")
        for (x, y), (day, value) in zip(coords, s.points, strict=True):
            marks.append(_marker(shape, x, y, size, colour, f"{s.lesion}, {day.isoformat()}: {signed(value)}"))
        ends.append(coords[-1])
        legend_y = frame.top + 8 + index * 16
        legend_x = frame.width - frame.right + 30
        body.append(_line(legend_x, legend_y, legend_x + 22, legend_y, stroke=colour, width=2, dash=dash))
        body.append(_marker(shape, legend_x + 11, legend_y, size, colour, s.lesion))
        body.append(_text(legend_x + 28, legend_y + 4, s.lesion))
    body.extend(marks)  # above every line, largest first
    # Each line's name at its last point, moved apart where lines end together.
    label_ys = spread([y + 4 for _, y in ends], low=frame.top + 4, high=frame.height - frame.bottom)
    for s, (x, _), label_y in zip(drawn, ends, label_ys, strict=True):
        body.append(_text(x + 7, label_y, s.lesion.split()[0], css="end-label", size=10))
    description = "; ".join(
        f"{s.lesion}: " + ", ".join(f"{d.isoformat()} {signed(v)}" for d, v in s.points) for s in drawn
    )
    return _svg(frame, title, description, body, css_class="spider", data={"lesions": len(drawn)})


# ---------------------------------------------------------------------------------------------------------------
# Sum of diameters over time, with the growth-rate slopes and the therapy start
# ---------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CurveSeries:
    """A burden curve: ``(scan date, value in mm)``; ``primary`` is drawn solid, the others dashed."""

    name: str
    points: tuple[tuple[dt.date, float], ...]
    primary: bool = True


@dataclass(frozen=True)
class Slope:
    """A growth-rate segment between two scans (E0→E1 before treatment, E1→E2 on treatment)."""

    kind: str
    """``pre-treatment`` | ``on-treatment``."""
    start: tuple[dt.date, float]
    end: tuple[dt.date, float]
    label: str


def burden_curve(
    series: Sequence[CurveSeries],
    *,
    therapy_start: dt.date | None,
    slopes: Sequence[Slope] = (),
    extra_points: Sequence[tuple[dt.date, float, str]] = (),
    width: int = 640,
    height: int = 320,
) -> str:
    """Sum of diameters (mm) against the scan date; a vertical line at the therapy start (C1D1)."""
    title = "Sum of target-lesion diameters over time"
    drawn = [s for s in series if s.points]
    if not drawn:
        return _empty(width, height, title, "No sum of diameters to plot.", "burden")
    days = [d for s in drawn for d, _ in s.points] + [p[0] for p in extra_points]
    days += [d for sl in slopes for d in (sl.start[0], sl.end[0])]
    if therapy_start is not None:
        days.append(therapy_start)
    origin = min(days)
    span = max(1, (max(days) - origin).days)
    values = [v for s in drawn for _, v in s.points] + [p[1] for p in extra_points]
    values += [v for sl in slopes for v in (sl.start[1], sl.end[1])]
    y_ticks = nice_ticks(0, max(values) * 1.1 or 1)
    pad = max(3, round(span * 0.04))
    # The key (series when there are several, then slopes) goes under the axis, where it cannot hide the data.
    legend_height = 16 * (len(slopes) + (len(drawn) if len(drawn) > 1 else 0))
    height += legend_height
    frame = _Frame(width, height, 58, 20, 34, 44 + legend_height, -pad, span + pad, y_ticks[0], y_ticks[-1])

    def x_of(day: dt.date) -> float:
        return frame.x((day - origin).days)

    body = _y_axis(frame, y_ticks, "Sum of diameters (mm)", lambda t: f"{t:g}")
    body.append(_line(frame.left, frame.height - frame.bottom, frame.width - frame.right, frame.height - frame.bottom))
    labelled = sorted({d for s in drawn for d, _ in s.points} | {p[0] for p in extra_points})
    last_x = -1e9
    for day in labelled:
        x = x_of(day)
        body.append(_line(x, frame.height - frame.bottom, x, frame.height - frame.bottom + 4))
        if x - last_x > 62:  # keep date labels from overlapping
            body.append(_text(x, frame.height - frame.bottom + 16, day.isoformat(), anchor="middle", size=10))
            last_x = x
    body.append(
        _text(frame.left + frame.inner_width / 2, frame.height - legend_height - 6, "Scan date", anchor="middle")
    )
    if therapy_start is not None:
        x = x_of(therapy_start)
        body.append(
            _line(
                x,
                frame.top - 6,
                x,
                frame.height - frame.bottom,
                stroke="#2A7F2A",
                width=1.5,
                dash="6 3",
                css="therapy-start",
                data={"date": therapy_start.isoformat()},
                title=f"Immunotherapy start (C1D1) {therapy_start.isoformat()}",
            )
        )
        body.append(_text(x + 4, frame.top - 10, f"C1D1 {therapy_start.isoformat()}", fill="#2A7F2A", size=10))
    slope_colours = {"pre-treatment": "#7F3C8D", "on-treatment": "#D55E00"}
    for index, slope in enumerate(slopes):
        colour = slope_colours.get(slope.kind, AXIS)
        x1, y1 = x_of(slope.start[0]), frame.y(slope.start[1])
        x2, y2 = x_of(slope.end[0]), frame.y(slope.end[1])
        body.append(
            _line(
                x1,
                y1,
                x2,
                y2,
                stroke=colour,
                width=3,
                dash="2 3",
                css=f"slope slope-{slope.kind}",
                data={"kind": slope.kind, "start": slope.start[0].isoformat(), "end": slope.end[0].isoformat()},
                title=slope.label,
            )
        )
        key_y = frame.height - 16 * len(slopes) + 6 + index * 16
        body.append(_line(frame.left, key_y, frame.left + 22, key_y, stroke=colour, width=3, dash="2 3"))
        body.append(_text(frame.left + 28, key_y + 4, slope.label, fill=colour, css=f"slope-label slope-{slope.kind}"))
    for index, s in enumerate(drawn):
        colour = "#222222" if s.primary else LESION_COLOURS[(index + 1) % len(LESION_COLOURS)]
        coords = [(x_of(d), frame.y(v)) for d, v in s.points]
        data = {
            "series": s.name,
            "points": len(s.points),
            "dates": " ".join(d.isoformat() for d, _ in s.points),
            "values": " ".join(f"{v:g}" for _, v in s.points),
        }
        attrs = "".join(f' data-{k}="{_attr(v)}"' for k, v in data.items())
        dash = "" if s.primary else ' stroke-dasharray="5 3"'
        body.append(
            f'<polyline class="burden{" primary" if s.primary else ""}" fill="none" stroke="{colour}" '
            f'stroke-width="2"{dash} points="{" ".join(f"{_num(x)},{_num(y)}" for x, y in coords)}"{attrs}>'
            f"<title>{escape(s.name)}</title></polyline>"
        )
        for (x, y), (day, value) in zip(coords, s.points, strict=True):
            body.append(
                f'<circle class="burden-point" cx="{_num(x)}" cy="{_num(y)}" r="3.5" fill="{colour}">'
                f"<title>{escape(s.name)}, {day.isoformat()}: {value:g} mm</title></circle>"
            )
        if len(drawn) > 1:
            key_y = frame.height - legend_height + 6 + index * 16
            body.append(
                _line(
                    frame.left, key_y, frame.left + 22, key_y, stroke=colour, width=2, dash="" if s.primary else "5 3"
                )
            )
            body.append(_text(frame.left + 28, key_y + 4, s.name))
    for day, value, label in extra_points:
        body.append(
            f'<circle class="extra-point" cx="{_num(x_of(day))}" cy="{_num(frame.y(value))}" r="4" '
            f'fill="#FFFFFF" stroke="#7F3C8D" stroke-width="2" data-date="{day.isoformat()}" '
            f'data-value="{value:g}"><title>{escape(label)}</title></circle>'
        )
    description = "; ".join(f"{s.name}: " + ", ".join(f"{d.isoformat()} {v:g} mm" for d, v in s.points) for s in drawn)
    if slopes:
        description += ". " + "; ".join(s.label for s in slopes)
    return _svg(frame, title, description, body, css_class="burden")


# ---------------------------------------------------------------------------------------------------------------
# Waterfall: best percent change per patient, for one criterion
# ---------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class WaterfallBar:
    """One patient's best (lowest) percent change from baseline under one criterion."""

    label: str
    """What to call the patient on a non-clinical page (a pseudonym)."""
    value: float
    category: str
    """The patient's best overall response under the criterion (the bar's colour)."""
    response_class: str
    """One of ``CATEGORY_COLOURS``' keys."""
    href: str | None = None


def waterfall(
    bars: Sequence[WaterfallBar],
    *,
    criterion: str,
    criterion_name: str,
    lines: Sequence[tuple[float, str]] = (),
    width: int = 460,
    height: int = 260,
) -> str:
    """Bars sorted from the largest increase to the deepest decrease; reference lines (e.g. −30 %, +20 %)."""
    title = f"Waterfall plot: best percent change from baseline, {criterion_name}"
    if not bars:
        return _empty(width, height, title, "No patient with a follow-up in this selection.", f"waterfall {criterion}")
    ordered = sorted(bars, key=lambda b: (-b.value, b.label))
    values = [b.value for b in ordered] + [v for v, _ in lines] + [0.0]
    y_ticks = nice_ticks(min(values), max(values))
    frame = _Frame(width, height, 68, 12, 18, 22, 0, len(ordered), y_ticks[0], y_ticks[-1])
    body = _y_axis(frame, y_ticks, "Best change (%)", lambda t: signed(t, 0, " %") if t else "0 %")
    slot = frame.inner_width / len(ordered)
    bar_width = max(2.0, min(36.0, slot * 0.7))
    zero = frame.y(0)
    for value, _ in lines:
        body.append(_reference_line(frame, value, "#555555"))
    # Threshold names where the sorted bars leave room: an increase threshold at the right end above its line
    # (the bars there are the decreases), a decrease threshold at the left end below it; apart from each other.
    above = [(v, label) for v, label in lines if v >= 0]
    below = [(v, label) for v, label in lines if v < 0]
    for group, x, anchor, shift in (
        (above, frame.width - frame.right - 2, "end", -4.0),
        (below, frame.left + 4, "start", 11.0),
    ):
        ys = spread([frame.y(v) + shift for v, _ in group], low=frame.top + 8, high=frame.height - frame.bottom - 2)
        for (_, label), y in zip(group, ys, strict=True):
            body.append(_text(x, y, label, anchor=anchor, css="reference-label", size=10))
    for index, bar in enumerate(ordered):
        x = frame.x(index) + (slot - bar_width) / 2
        top = min(zero, frame.y(bar.value))
        h = abs(bar.value) * frame.y_scale
        fill = CATEGORY_COLOURS.get(bar.response_class, "#8C8C8C")
        tooltip = f"{bar.label}: {signed(bar.value)}, best overall response {bar.category}"
        rect = (
            f'<rect class="bar {_attr(bar.response_class)}" x="{_num(x)}" y="{_num(top)}" '
            f'width="{_num(bar_width)}" height="{h:.2f}" fill="{fill}" data-patient="{_attr(bar.label)}" '
            f'data-criterion="{_attr(criterion)}" data-value="{bar.value:.2f}" data-category="{_attr(bar.category)}">'
            f"<title>{escape(tooltip)}</title></rect>"
        )
        body.append(f'<a href="{_attr(bar.href)}">{rect}</a>' if bar.href else rect)
        # The value at the bar's tip when the slot is wide enough for it; with many bars, the tooltip only.
        text = signed(bar.value, 0, " %") if round(bar.value) else "0 %"
        if slot >= 6.2 * len(text):
            tip = frame.y(bar.value) - 4 if bar.value >= 0 else frame.y(bar.value) + 12
            body.append(_text(x + bar_width / 2, tip, text, anchor="middle", css="bar-value", size=10))
    body.append(_line(frame.left, zero, frame.width - frame.right, zero))
    description = "; ".join(f"{b.label} {signed(b.value)} ({b.category})" for b in ordered)
    return _svg(
        frame,
        title,
        description,
        body,
        css_class=f"waterfall {criterion}",
        data={"criterion": criterion, "bars": len(ordered), "scale": f"{frame.y_scale:.6f}"},
    )


# ---------------------------------------------------------------------------------------------------------------
# Incidence bars: proportion met among the evaluable, per definition
# ---------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class IncidenceRow:
    code: str
    label: str
    met: int
    evaluable: int
    not_evaluable: int


def incidence_bars(rows: Sequence[IncidenceRow], *, width: int = 640) -> str:
    """Horizontal bars: met / evaluable per hyperprogression definition (not-evaluable counted apart)."""
    title = "Hyperprogression incidence per definition (met among evaluable patients)"
    height = 24 + 20 * max(1, len(rows))
    if not rows:
        return _empty(width, 60, title, "No kinetics in this selection.", "incidence")
    frame = _Frame(width, height, 280, 130, 8, 16, 0, 100, 0, 1)
    body = []
    for tick in (0, 25, 50, 75, 100):
        x = frame.x(tick)
        body.append(_line(x, frame.top, x, frame.height - frame.bottom, stroke=GRID))
        body.append(_text(x, frame.height - 4, f"{tick} %", anchor="middle", size=10))
    for index, row in enumerate(rows):
        y = frame.top + index * 20
        share = 100 * row.met / row.evaluable if row.evaluable else 0.0
        label = row.label if len(row.label) <= 50 else row.label[:49] + "…"
        body.append(_text(frame.left - 6, y + 13, label, anchor="end", size=10))
        body.append(
            f'<rect class="incidence" x="{_num(frame.left)}" y="{_num(y + 3)}" '
            f'width="{_num(frame.x(share) - frame.left)}" height="13" fill="#D55E00" '
            f'data-definition="{_attr(row.code)}" data-met="{row.met}" data-evaluable="{row.evaluable}" '
            f'data-not-evaluable="{row.not_evaluable}"><title>{escape(row.label)}: {row.met}/{row.evaluable} '
            f"evaluable met; {row.not_evaluable} not evaluable</title></rect>"
        )
        note = f"{share:.0f} % ({row.met}/{row.evaluable})" if row.evaluable else "none evaluable"
        body.append(_text(frame.width - frame.right + 6, y + 13, f"{note}, NE {row.not_evaluable}", size=10))
    description = "; ".join(
        f"{r.label}: {r.met} of {r.evaluable} evaluable, {r.not_evaluable} not evaluable" for r in rows
    )
    return _svg(frame, title, description, body, css_class="incidence")


def km_curves(criterion: str, curves: Sequence[tuple[str, Sequence[tuple[float, float]]]], *, width: int = 640) -> str:
    """Kaplan–Meier step curves (survival against months), one per source (engine, signed), with y in 0–100 %."""
    title = f"Progression-free survival, {criterion} (Kaplan–Meier)"
    points = [p for _, curve in curves for p in curve]
    if not points:
        return _empty(width, 60, title, "No patient to estimate.", "km")
    x_max = max(1.0, max(t for t, _ in points))
    frame = _Frame(width, 240, 48, 110, 12, 32, 0, x_max, 0, 100)
    body = []
    for tick in (0, 25, 50, 75, 100):
        y = frame.y(tick)
        body.append(_line(frame.left, y, frame.width - frame.right, y, stroke=GRID))
        body.append(_text(frame.left - 6, y + 4, f"{tick} %", anchor="end", size=10))
    for month in nice_ticks(0, x_max):
        if 0 <= month <= x_max:
            body.append(_text(frame.x(month), frame.height - frame.bottom + 14, f"{month:g}", anchor="middle", size=10))
    body.append(_text(frame.left + frame.inner_width / 2, frame.height - 4, "months", anchor="middle", size=10))
    for index, (source, curve) in enumerate(curves):
        colour, dash = LESION_COLOURS[index], LESION_DASHES[index]
        path: list[str] = []
        previous: float | None = None
        for t, s in curve:
            x, y = frame.x(t), frame.y(100 * s)
            if previous is None:
                path.append(f"M{_num(x)},{_num(y)}")
            else:
                path.append(f"H{_num(x)}V{_num(y)}")
            previous = y
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        body.append(
            f'<path class="km-curve" data-source="{_attr(source)}" d="{"".join(path)}" fill="none" '
            f'stroke="{colour}" stroke-width="2"{dash_attr}><title>{escape(source)}</title></path>'
        )
        body.append(_text(frame.width - frame.right + 8, frame.top + 14 + 16 * index, source, fill=colour, size=10))
    description = "; ".join(f"{source}: {len(curve)} steps" for source, curve in curves)
    return _svg(frame, title, description, body, css_class="km", data={"criterion": criterion})
