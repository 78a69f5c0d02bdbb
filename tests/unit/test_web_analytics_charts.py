"""The analytics page's column charts: geometry from the figures, no script."""
from web_svc.analytics_charts import AXIS, HEIGHT, TOP, columns, hours


def test_columns_stand_side_by_side_per_period_scaled_to_the_largest_value():
    items, ticks, top = columns(["2026-11-02", "2026-11-09"], {"created": [4, 2], "completed": [1, 0]},
                                width=200)
    assert top == 4
    assert [(c.series, c.label, c.value) for c in items] == [
        ("created", "2026-11-02", 4), ("completed", "2026-11-02", 1),
        ("created", "2026-11-09", 2), ("completed", "2026-11-09", 0)]
    span = HEIGHT - AXIS - TOP
    assert [c.height for c in items] == [span, span / 4, span / 2, 0]
    assert all(c.y + c.height == TOP + span for c in items)  # on the axis
    assert items[0].x < items[1].x < items[2].x and items[0].width == items[1].width == 40
    assert [t.x for t in ticks] == [50, 150]


def test_many_periods_label_at_most_about_eight_ticks_and_nothing_is_drawn_from_nothing():
    labels = [f"2026-01-{d:02d}" for d in range(1, 32)]
    _, ticks, _ = columns(labels, {"created": [0] * 31})
    assert 4 <= len(ticks) <= 8 and ticks[0].label == labels[0]
    items, ticks, top = columns([], {"created": []})
    assert items == [] and ticks == [] and top == 1
    assert hours(None) == 0 and hours(5400) == 1.5
