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
