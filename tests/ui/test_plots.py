"""Server-rendered SVG plots (``service.dashboard.plots``): well-formed, escaped, and drawing the values they are given."""

from __future__ import annotations

import datetime as dt
import xml.etree.ElementTree as ET

import pytest

from service.dashboard import plots

D = dt.date.fromisoformat
SVG = "{http://www.w3.org/2000/svg}"


def parse(svg: str) -> ET.Element:
    root = ET.fromstring(svg)  # well-formed XML, or this raises  # noqa: S314 -- parses the SVG our own plotting code wrote in this test
    assert root.tag == f"{SVG}svg" and root.get("role") == "img"
    return root


def test_spider_plot_draws_one_polyline_per_lesion_with_its_points():
    series = [
        plots.SpiderSeries("T1 lung", ((D("2024-01-08"), 0.0), (D("2024-03-11"), -30.0), (D("2024-05-06"), -35.0))),
        plots.SpiderSeries("T3 node", ((D("2024-01-08"), 0.0), (D("2024-03-11"), -30.0))),
    ]
    root = parse(
        plots.spider_plot(
            series,
            reference_date=D("2024-01-15"),
            reference_label="C1D1",
            lines=[(-30.0, "PR −30 %"), (20.0, "PD +20 %")],
        )
    )
    lines = root.findall(f".//{SVG}polyline")
    assert [p.get("data-lesion") for p in lines] == ["T1 lung", "T3 node"]
    assert [len(p.get("points").split()) for p in lines] == [3, 2]
    assert lines[0].get("data-percent") == "0.00 -30.00 -35.00"
    # Lower percent → lower on the plot (larger y); the baseline point lies on the 0 % line.
    ys = [float(pair.split(",")[1]) for pair in lines[0].get("points").split()]
    assert ys[0] < ys[1] < ys[2]
    assert len(root.findall(f".//{SVG}line[@class='reference-line']")) == 2


def test_text_is_escaped_in_every_plot():
    hostile = '<script>alert("x")</script> & "co"'
    spider = plots.spider_plot(
        [plots.SpiderSeries(hostile, ((D("2024-01-01"), 0.0), (D("2024-02-01"), 5.0)))],
        reference_date=D("2024-01-01"),
        reference_label=hostile,
    )
    waterfall = plots.waterfall(
        [plots.WaterfallBar(hostile, -40.0, hostile, "response", href='/x?a="1"&b=<2>')],
        criterion="RECIST-1.1",
        criterion_name=hostile,
    )
    burden = plots.burden_curve(
        [plots.CurveSeries(hostile, ((D("2024-01-01"), 50.0), (D("2024-02-01"), 40.0)))],
        therapy_start=D("2024-01-05"),
        slopes=[plots.Slope("on-treatment", (D("2024-01-01"), 50.0), (D("2024-02-01"), 40.0), hostile)],
    )
    incidence = plots.incidence_bars([plots.IncidenceRow("x", hostile, 1, 2, 0)])
    for svg in (spider, waterfall, burden, incidence):
        assert "<script>" not in svg
        root = parse(svg)
        texts = [t.text or "" for t in root.iter() if t.tag in (f"{SVG}text", f"{SVG}title", f"{SVG}desc")]
        assert any(hostile[:20] in t or hostile[:10] in t for t in texts)


def test_waterfall_bar_heights_are_the_values_to_scale():
    bars = [
        plots.WaterfallBar("p-a", -35.56, "PR", "response"),
        plots.WaterfallBar("p-b", 81.82, "PD", "progression"),
        plots.WaterfallBar("p-c", -20.59, "SD", "stable"),
        plots.WaterfallBar("p-d", 0.0, "SD", "stable"),
    ]
    root = parse(plots.waterfall(bars, criterion="RECIST-1.1", criterion_name="RECIST 1.1"))
    scale = float(root.get("data-scale"))
    rects = root.findall(f".//{SVG}rect")
    assert [r.get("data-patient") for r in rects] == ["p-b", "p-d", "p-c", "p-a"]  # largest increase first
    for rect in rects:
        assert float(rect.get("height")) == pytest.approx(abs(float(rect.get("data-value"))) * scale, abs=0.01)
    # Bars above zero end at the zero line from above, bars below start at it.
    up, down = rects[0], rects[-1]
    assert float(up.get("y")) + float(up.get("height")) == pytest.approx(float(down.get("y")), abs=0.1)
    assert rects[0].get("fill") == plots.CATEGORY_COLOURS["progression"]


def test_burden_curve_marks_therapy_start_and_slopes():
    series = [plots.CurveSeries("Sum", ((D("2024-02-01"), 44.0), (D("2024-03-18"), 80.0)))]
    slopes = [
        plots.Slope("pre-treatment", (D("2024-01-02"), 40.0), (D("2024-02-01"), 44.0), "before: +33.66 %/month"),
        plots.Slope("on-treatment", (D("2024-02-01"), 44.0), (D("2024-03-18"), 80.0), "on: +227.64 %/month"),
    ]
    root = parse(
        plots.burden_curve(
            series, therapy_start=D("2024-02-05"), slopes=slopes, extra_points=[(D("2024-01-02"), 40.0, "E0")]
        )
    )
    assert root.find(f".//{SVG}line[@class='therapy-start']").get("data-date") == "2024-02-05"
    drawn = {line.get("data-kind"): line for line in root.findall(f".//{SVG}line") if line.get("data-kind")}
    assert set(drawn) == {"pre-treatment", "on-treatment"}

    # The pre-treatment segment rises less steeply than the on-treatment one (pixels: smaller y is higher).
    def slope(line):
        return (float(line.get("y1")) - float(line.get("y2"))) / (float(line.get("x2")) - float(line.get("x1")))

    assert 0 < slope(drawn["pre-treatment"]) < slope(drawn["on-treatment"])
    assert root.find(f".//{SVG}polyline").get("data-values") == "44 80"


def test_empty_plots_say_why():
    assert "No target lesion" in plots.spider_plot([], reference_date=D("2024-01-01"), reference_label="baseline")
    assert "No patient" in plots.waterfall([], criterion="iRECIST", criterion_name="iRECIST")
    assert "No sum" in plots.burden_curve([], therapy_start=None)


def test_ticks_and_numbers():
    assert plots.nice_ticks(-35.5, 81.8) == [-50, -25, 0, 25, 50, 75, 100]  # the ticks cover the data
    assert plots.nice_ticks(0, 88) == [0, 20, 40, 60, 80, 100]
    assert plots.signed(-30) == "\u221230.00 %" and plots.signed(5.171) == "+5.17 %" and plots.signed(0) == "0.00 %"


# -- issue 15 item 5: lines that overlap stay distinguishable; labels never overlap -----------------------------
def coinciding_series(count: int) -> list[plots.SpiderSeries]:
    """``count`` lesions that shrink exactly alike (the demo's partial response: every target −30 % at FU1)."""
    points = ((D("2024-01-08"), 0.0), (D("2024-03-11"), -30.0), (D("2024-05-06"), -32.0))
    return [plots.SpiderSeries(f"T{i + 1} site", points) for i in range(count)]


def test_spider_lines_on_top_of_each_other_differ_in_dash_marker_and_label():
    root = parse(plots.spider_plot(coinciding_series(4), reference_date=D("2024-01-15"), reference_label="C1D1"))
    lines = root.findall(f".//{SVG}polyline")
    styles = [(p.get("stroke"), p.get("stroke-dasharray") or "solid", p.get("data-marker")) for p in lines]
    assert len({dash for _, dash, _ in styles}) == 4 and len({marker for _, _, marker in styles}) == 4
    # Where the points coincide, every lesion's mark is drawn, the earlier ones larger, so each stays visible.
    marks = [m for m in root.iter() if m.get("class") == "marker" and "2024-03-11" in (m.findtext(f"{SVG}title") or "")]
    assert [m.findtext(f"{SVG}title").split(",")[0] for m in marks] == ["T1 site", "T2 site", "T3 site", "T4 site"]
    extents = [float(m.get("r") or float(m.get("width") or 0) / 2 or 0) for m in marks if m.tag != f"{SVG}polygon"]
    assert extents == sorted(extents, reverse=True)
    # Each line is named at its end; names of lines ending together are moved apart (≥ one line of text).
    names = [t for t in root.findall(f".//{SVG}text") if t.get("class") == "end-label"]
    assert [t.text for t in names] == ["T1", "T2", "T3", "T4"]
    ys = sorted(float(t.get("y")) for t in names)
    assert all(b - a >= plots.LABEL_GAP for a, b in zip(ys, ys[1:], strict=False))


def test_spread_keeps_order_and_moves_labels_only_as_far_as_needed():
    # 10 and 12 are 2 apart: the second moves to 10 + 12 = 22; 30 is then 8 from 22: it moves to 34.
    assert plots.spread([10.0, 12.0, 30.0], gap=12.0) == [10.0, 22.0, 34.0]
    # Exactly one gap apart (the boundary) is far enough: nothing moves.
    assert plots.spread([30.0, 18.0], gap=12.0) == [30.0, 18.0]
    # Pushed past the upper bound, the stack shifts back down inside it.
    assert plots.spread([95.0, 96.0], gap=12.0, high=100.0) == [88.0, 100.0]


@pytest.mark.parametrize("count", [4, 30, 120])
def test_waterfall_is_sorted_and_its_labels_never_overlap(count):
    values = [((i * 37) % 180) - 100.0 + i / 100 for i in range(count)]
    bars = [plots.WaterfallBar(f"p-{i:03d}", v, "PR", "response") for i, v in enumerate(values)]
    root = parse(
        plots.waterfall(
            bars,
            criterion="RECIST-1.1",
            criterion_name="RECIST 1.1",
            lines=[(-30.0, "PR −30 %"), (20.0, "PD +20 % (from nadir)")],
        )
    )
    drawn = [float(r.get("data-value")) for r in root.findall(f".//{SVG}rect")]
    assert drawn == sorted(drawn, reverse=True)  # largest increase first
    texts = [t for t in root.findall(f".//{SVG}text") if t.get("class") in ("bar-value", "reference-label")]
    boxes = []
    for t in texts:  # text box: 6.2 px per character at font size 10, anchored as drawn
        width, x, y = 6.2 * len(t.text), float(t.get("x")), float(t.get("y"))
        left = {"start": x, "middle": x - width / 2, "end": x - width}[t.get("text-anchor")]
        boxes.append((left, left + width, y - 10, y))
    for i, a in enumerate(boxes):
        for b in boxes[i + 1 :]:
            assert a[1] <= b[0] or b[1] <= a[0] or a[3] <= b[2] or b[3] <= a[2], (a, b)
    values_shown = [t for t in texts if t.get("class") == "bar-value"]
    assert len(values_shown) == (count if count == 4 else 0)  # many thin bars: values in the tooltips only
