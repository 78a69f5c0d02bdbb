from web_svc import charts
from web_svc.charts import BAR_HEIGHT, GAP, LABEL_WIDTH, VALUE_WIDTH, bars


def test_bars_scale_to_the_largest_value_and_stack_downwards():
    items, height = bars([("todo", 2), ("in_progress", 0), ("done", 4)], width=520)
    span = 520 - LABEL_WIDTH - VALUE_WIDTH
    assert [b.width for b in items] == [span / 2, 0, span]
    assert [b.y for b in items] == [0, BAR_HEIGHT + GAP, 2 * (BAR_HEIGHT + GAP)]
    assert height == 3 * BAR_HEIGHT + 2 * GAP


def test_no_rows_or_only_zeros_draw_no_bar_wider_than_nothing():
    assert bars([]) == ([], BAR_HEIGHT)
    items, _ = bars([("done", 0)])
    assert items[0].width == 0


def test_minute_columns_scale_to_the_busiest_minute_and_end_with_now():
    cols, top = charts.columns([0, 2, 8, 4], width=400, height=100)
    assert top == 8
    assert [c.minute for c in cols] == [3, 2, 1, 0]  # minutes ago: the last is the current one
    assert [c.height for c in cols] == [0, 25, 100, 50]
    assert [c.x for c in cols] == [0, 100, 200, 300]


def test_a_quiet_hour_draws_flat_columns_not_a_division_by_zero():
    cols, top = charts.columns([0] * 60)
    assert top == 0 and len(cols) == 60 and all(c.height == 0 for c in cols)
