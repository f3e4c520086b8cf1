"""The overlay people watch: text and lines scaled to the frame, boxes that say what they are, the brake states."""

from __future__ import annotations

from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from meta_ood_perception.overlay import (
    BRAKE,
    CLEAR,
    LEGEND,
    MIN_FONT_SCALE,
    UNAVAILABLE,
    WARN,
    annotate,
    banner_state,
    box_label,
    fit_text,
    overlay_style,
    unavailable,
)

GREY = 90


def hint(available=True, active=False, seen=False, risk=0.0):
    return SimpleNamespace(available=available, active=active, seen=seen, risk=risk)


def result(height: int, width: int, brake=None, components=(), in_domain=True):
    comps = list(components)
    return SimpleNamespace(mask=np.zeros((height, width), bool), components=comps,
                           brake=brake or hint(), domain=SimpleNamespace(in_domain=in_domain))  # fmt: skip


def component(bbox, p_false_positive=0.07, kept=True, area=400):
    return SimpleNamespace(bbox=bbox, p_false_positive=p_false_positive, kept=kept, area=area)


def white_rows(region: np.ndarray) -> int:
    """Rows of ``region`` (BGR) holding white text pixels: the text's height in pixels."""
    return int(np.count_nonzero((region.min(axis=2) > 200).any(axis=1)))


def banner_rows(bgr: np.ndarray, color) -> int:
    """Rows from the top whose first pixel has the banner's colour."""
    column = bgr[:, 1]
    rows = 0
    while rows < len(column) and tuple(int(v) for v in column[rows]) == color:
        rows += 1
    return rows


@pytest.mark.parametrize("size", [(256, 512), (512, 256), (1024, 2048)])
def test_banner_text_grows_with_the_frame_and_fits_its_width(size):
    height, width = size
    frame = np.full((height, width, 3), GREY, np.uint8)
    small = annotate(np.full((128, 256, 3), GREY, np.uint8), result(128, 256), legend=False)
    big = annotate(frame, result(height, width, hint(active=True, risk=0.93)), label="camera/front", legend=False)
    style = overlay_style(height)
    assert banner_rows(big, BRAKE) == style.banner_px >= banner_rows(small, CLEAR)
    text_px = white_rows(big[: style.banner_px])
    assert text_px >= 0.4 * style.banner_px  # the text fills the banner at every size
    if height >= 1024:  # 1024 rows: the text is ~3× that of a 128-row frame, readable at full resolution
        assert text_px >= 2.5 * white_rows(small[:18]) and style.font_scale > 1.0 and style.thickness >= 2
    columns = np.flatnonzero((big[: style.banner_px].min(axis=2) > 200).any(axis=0))
    assert columns.max() < width - style.pad_px // 2  # never cut at the right edge


def test_style_grows_with_the_frame_height():
    styles = [overlay_style(h) for h in (128, 256, 720, 1024, 2048)]
    for field in ("banner_px", "font_scale", "label_scale", "box_px"):
        values = [getattr(s, field) for s in styles]
        assert values == sorted(values) and values[-1] > values[0], field
    assert styles[0].banner_px == 18 and styles[0].font_scale == pytest.approx(0.42)  # the smallest stays legible


def test_a_kept_box_is_labelled_hazard_with_one_minus_p_false_positive():
    assert box_label(component((0, 0, 1, 1), p_false_positive=0.07)) == "hazard 0.93"
    assert box_label(component((0, 0, 1, 1), p_false_positive=0.0)) == "hazard 1.00"
    height, width = 512, 1024
    box = (400, 300, 520, 380)
    bgr = annotate(np.full((height, width, 3), GREY, np.uint8), result(height, width, components=[component(box)]),
                   legend=False)  # fmt: skip
    style = overlay_style(height)
    tag = bgr[box[1] - 3 * style.banner_px : box[1], box[0] : box[0] + 200]
    red = (tag[..., 2] > 200) & (tag[..., 1] < 60) & (tag[..., 0] < 60)
    assert red.sum() > 500 and white_rows(tag) >= 0.3 * style.banner_px  # a red tag with white text on it
    # a removed component gets a grey box and no tag
    grey = annotate(np.full((height, width, 3), GREY, np.uint8),
                    result(height, width, components=[component(box, kept=False)]), legend=False)  # fmt: skip
    above = grey[box[1] - 3 * style.banner_px : box[1] - style.rejected_px, box[0] : box[0] + 200]
    assert (above == GREY).all() and (grey[box[1], box[0] : box[2]] == 160).all()


def test_labels_of_boxes_side_by_side_do_not_overlap():
    height, width = 256, 512
    boxes = [component((200, 130, 230, 150)), component((215, 130, 245, 160), p_false_positive=0.5)]
    bgr = annotate(np.full((height, width, 3), GREY, np.uint8), result(height, width, components=boxes), legend=False)
    style = overlay_style(height)
    (_, h), base = cv2.getTextSize("hazard 0.93", cv2.FONT_HERSHEY_SIMPLEX, style.label_scale, style.label_thickness)
    tag_h = h + base + style.pad_px
    red_rows = np.flatnonzero(((bgr[..., 2] > 200) & (bgr[..., 1] < 60)).any(axis=1))
    tags = red_rows[red_rows < 130 - style.box_px]  # tag rows above the boxes' top edge
    assert tags.size > 1.5 * tag_h  # two tags stacked, not one drawn over the other (that would be tag_h rows)


def test_the_legend_explains_the_label_at_every_width():
    for height, width in ((256, 512), (512, 256), (1024, 2048)):
        frame = np.full((height, width, 3), GREY, np.uint8)
        with_legend = annotate(frame, result(height, width))
        without = annotate(frame, result(height, width), legend=False)
        strip = with_legend[-3 * overlay_style(height).banner_px :]
        assert white_rows(strip) > 0 and (without[-3 * overlay_style(height).banner_px :] == GREY).all()
    assert all("1 - P(false positive)" in text for text in LEGEND)


@pytest.mark.parametrize(
    ("brake", "in_domain", "expected", "color"),
    [
        (hint(active=True, risk=0.5), True, "BRAKE  risk 0.50", BRAKE),
        (hint(seen=True, risk=0.1), True, "WARN  risk 0.10", WARN),
        (hint(risk=0.0), True, "clear  risk 0.00", CLEAR),
        (hint(available=False), True, "PERCEPTION UNAVAILABLE", UNAVAILABLE),
        (hint(available=False), False, "OUTSIDE THE BUNDLE'S DOMAIN: UNAVAILABLE", UNAVAILABLE),
    ],
)
def test_banner_states(brake, in_domain, expected, color):
    frame_result = result(64, 128, brake, in_domain=in_domain)
    assert banner_state(frame_result) == (expected, color)
    bgr = annotate(np.full((256, 512, 3), GREY, np.uint8), result(256, 512, brake, in_domain=in_domain))
    assert banner_rows(bgr, color) == overlay_style(256).banner_px


def test_unavailable_frames_get_the_scaled_banner():
    bgr = unavailable(np.full((1024, 2048, 3), GREY, np.uint8), "device lost", "camera/front")
    assert banner_rows(bgr, UNAVAILABLE) == overlay_style(1024).banner_px
    assert white_rows(bgr[: overlay_style(1024).banner_px]) > 20


def test_fit_text_shrinks_then_cuts():
    text = "BRAKE  risk 0.93  camera/front"
    full = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 1.0, 1)[0][0]
    assert fit_text(text, 1.0, 1, full + 5) == (text, 1.0)
    fitted, scale = fit_text(text, 1.0, 1, full // 2)
    assert fitted == text and 0.9 * (full // 2) / full <= scale <= (full // 2) / full
    cut, scale = fit_text(text, 1.0, 1, 60)
    assert scale == MIN_FONT_SCALE and cut.endswith("...") and len(cut) < len(text)
    assert cv2.getTextSize(cut, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)[0][0] <= 60
    assert fit_text(text, 1.0, 1, 2)[0] == ""
