"""Property-based tests of image/mask geometry: resizing keeps masks aligned with their X-rays, and
rasterised AASCE vertebrae stay inside the image for any landmarks.

Pixel ``i`` of an image of ``n`` pixels resized to ``N`` maps to :math:`(i + 0.5)\\,N/n - 0.5`
(pixel centres, the convention of ``skimage.transform.resize``); "aligned" means centroids agree
under this map to within half a source pixel.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from skimage.draw import ellipse

from spinelib.core.imageio import resize_image, resize_mask
from spinelib.data.aasce import vertebra_mask

SETTINGS = settings(max_examples=50, deadline=None, derandomize=True)  # same examples on every run: CI is not flaky


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = (a | b).sum()
    return float((a & b).sum() / union) if union else 1.0


def _centroid(m: np.ndarray) -> np.ndarray:
    return np.argwhere(m).mean(axis=0)


@st.composite
def blobs(draw, min_side: int = 3, max_size: int = 72):
    """A bool mask with one rectangle or ellipse whose sides are at least ``min_side`` pixels."""
    h = draw(st.integers(max(8, min_side), max_size))
    w = draw(st.integers(max(8, min_side), max_size))
    bh = draw(st.integers(min_side, h))
    bw = draw(st.integers(min_side, w))
    y0 = draw(st.integers(0, h - bh))
    x0 = draw(st.integers(0, w - bw))
    m = np.zeros((h, w), bool)
    if draw(st.booleans()):
        m[y0:y0 + bh, x0:x0 + bw] = True
    else:
        rr, cc = ellipse(y0 + (bh - 1) / 2, x0 + (bw - 1) / 2, bh / 2, bw / 2, shape=(h, w))
        m[rr, cc] = True
    if not m.any():  # a sliver ellipse can miss every pixel centre
        m[y0 + bh // 2, x0 + bw // 2] = True
    return m


methods = st.sampled_from(["nearest", "area"])


@SETTINGS
@given(m=blobs(min_side=5), factor_y=st.floats(1.0, 4.0), factor_x=st.floats(1.0, 4.0), method=methods)
def test_mask_up_and_back_keeps_shape_and_position(m, factor_y, factor_x, method):
    h, w = m.shape
    big = (int(round(h * factor_y)), int(round(w * factor_x)))
    up = resize_mask(m, big, method=method)
    back = resize_mask(up, (h, w), method=method)
    assert up.shape == big and back.shape == (h, w) and up.dtype == back.dtype == bool
    assert _iou(back, m) >= 0.9
    # the enlarged mask sits where the original maps to (within half a source pixel)
    scale = np.array(big) / np.array([h, w])
    expected = (_centroid(m) + 0.5) * scale - 0.5
    assert np.all(np.abs(_centroid(up) - expected) / scale <= 0.5)


@SETTINGS
@given(data=st.data(), factor=st.floats(1.0, 3.0), method=methods)
def test_mask_down_and_back_keeps_large_blobs(data, factor, method):
    m = data.draw(blobs(min_side=int(np.ceil(4 * factor)), max_size=96))
    h, w = m.shape
    small = (max(1, int(round(h / factor))), max(1, int(round(w / factor))))
    down = resize_mask(m, small, method=method)
    back = resize_mask(down, (h, w), method=method)
    assert down.any(), "a blob 4 output pixels wide vanished"
    assert _iou(back, m) >= 0.6
    assert np.all(np.abs(_centroid(back) - _centroid(m)) <= factor)


@SETTINGS
@given(m=blobs(), size=st.tuples(st.integers(1, 120), st.integers(1, 120)))
def test_resize_image_and_resize_mask_agree(m, size):
    """Same output shape for any target, and an X-ray and its mask resized together stay aligned."""
    img = resize_image(m.astype(np.uint8) * 255, size)
    near = resize_mask(m, size)
    area = resize_mask(m, size, method="area")
    assert img.shape == near.shape == area.shape == tuple(size)
    assert img.dtype == np.uint8 and near.dtype == area.dtype == bool
    from_image = img >= 128
    if area.sum() >= 16:  # a few output pixels at least: compare geometry
        assert _iou(from_image, area) >= 0.8
        assert np.all(np.abs(_centroid(from_image) - _centroid(area)) <= 1.0)


# ---------------------------------------------------------------------------------- AASCE


coords = st.floats(-400.0, 400.0, allow_nan=False, allow_infinity=False)


@SETTINGS
@given(lm=st.lists(st.tuples(coords, coords), min_size=68, max_size=68),
       shape=st.tuples(st.integers(1, 90), st.integers(1, 90)))
def test_vertebra_mask_stays_inside_the_image(lm, shape):
    """Any landmarks, far outside included: a mask of the image's shape, each pixel inside the
    bounding box of some vertebra's corners."""
    lm = np.asarray(lm).reshape(17, 4, 2)
    m = vertebra_mask(lm, shape)
    assert m.shape == tuple(shape) and m.dtype == bool
    rows, cols = np.nonzero(m)
    if len(rows):
        inside = np.zeros(len(rows), bool)
        for quad in lm:
            (x0, y0), (x1, y1) = quad.min(axis=0), quad.max(axis=0)
            inside |= (rows >= np.floor(y0) - 1) & (rows <= np.ceil(y1) + 1) & (cols >= np.floor(x0) - 1) & (cols <= np.ceil(x1) + 1)
        assert inside.all()


@st.composite
def rectangles(draw):
    """An image shape and a rotated rectangle (sides >= 2 px) inside it, corners in random order."""
    h = draw(st.integers(24, 96))
    w = draw(st.integers(24, 96))
    rh = draw(st.floats(2.0, h / 3))
    rw = draw(st.floats(2.0, w / 3))
    angle = draw(st.floats(-np.pi / 4, np.pi / 4))
    c, s = np.cos(angle), np.sin(angle)
    half = np.array([[-rw, -rh], [rw, -rh], [-rw, rh], [rw, rh]]) / 2  # TL, TR, BL, BR
    corners = half @ np.array([[c, s], [-s, c]])
    reach = np.abs(corners).max(axis=0)
    cx = draw(st.floats(reach[0], w - 1 - reach[0]))
    cy = draw(st.floats(reach[1], h - 1 - reach[1]))
    order = draw(st.permutations(range(4)))
    return (h, w), corners[list(order)] + [cx, cy], rw * rh


@SETTINGS
@given(case=rectangles())
def test_vertebra_mask_fills_non_degenerate_quadrilaterals(case):
    (h, w), quad, area = case
    m = vertebra_mask(np.repeat(quad[None], 17, axis=0), (h, w))
    n = int(m.sum())
    assert n > 0
    # filled pixel count ~ area, up to the pixels along the boundary
    assert abs(n - area) <= 2 * (np.sqrt(area) * 2 + 2) + 4


def _convex_area_perimeter(quad: np.ndarray) -> tuple[float, float, bool]:
    """Shoelace area, perimeter and convexity of 4 points taken in angle order around their centre."""
    c = quad.mean(axis=0)
    q = quad[np.argsort(np.arctan2(quad[:, 1] - c[1], quad[:, 0] - c[0]))]
    nxt = np.roll(q, -1, axis=0)
    area = 0.5 * abs(float(np.sum(q[:, 0] * nxt[:, 1] - nxt[:, 0] * q[:, 1])))
    perimeter = float(np.linalg.norm(nxt - q, axis=1).sum())
    e1, e2 = nxt - q, np.roll(nxt, -1, axis=0) - nxt
    cross = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]
    return area, perimeter, bool(np.all(cross >= 0) or np.all(cross <= 0))


@SETTINGS
@given(case=rectangles(), shift=st.tuples(st.floats(-60, 60), st.floats(-60, 60)))
def test_clipped_landmarks_give_a_mask_inside_the_image(case, shift):
    """Corners pushed outside and clipped as load_aasce does: the mask stays within the clipped
    corners' bounding box, and is non-empty whenever the clipped quadrilateral is convex with
    area / perimeter >= 1 (its inradius is then >= 1 px, so it holds a pixel centre)."""
    (h, w), quad, _ = case
    moved = quad + np.asarray(shift)
    clipped = np.stack([np.clip(moved[:, 0], 0, w - 1), np.clip(moved[:, 1], 0, h - 1)], axis=1)
    m = vertebra_mask(np.repeat(clipped[None], 17, axis=0), (h, w))
    assert m.shape == (h, w)
    rows, cols = np.nonzero(m)
    (x0, y0), (x1, y1) = clipped.min(axis=0), clipped.max(axis=0)
    assert ((rows >= np.floor(y0)) & (rows <= np.ceil(y1)) & (cols >= np.floor(x0)) & (cols <= np.ceil(x1))).all()
    area, perimeter, convex = _convex_area_perimeter(clipped)
    if convex and perimeter > 0 and area / perimeter >= 1.0:
        assert m.any()
