"""Robust image reading and atomic writing: every kind of odd file a dataset can hold."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from spinelib.core.imageio import (
    ImageReadError,
    atomic_write_bytes,
    image_size,
    read_mask,
    read_xray,
    resize_image,
    resize_mask,
    resize_probabilities,
    save_jpeg,
    save_png,
    to_uint8,
)
from spinelib.data.bad_inputs.file_makers import png_header_only, write_dicom


def _write_dicom(path: Path, array: np.ndarray | None, **kw) -> Path:
    return write_dicom(path, array, bits_stored=12, modality="CR", **kw)


# ---------------------------------------------------------------------------------- reading


def test_rgb_becomes_luminance(tmp_path):
    rgb = np.zeros((6, 8, 3), np.uint8)
    rgb[:, :4] = (255, 0, 0)
    rgb[:, 4:] = (0, 0, 255)
    Image.fromarray(rgb).save(tmp_path / "x.png")
    img = read_xray(tmp_path / "x.png")
    assert img.dtype == np.uint8 and img.shape == (6, 8)
    assert img[0, 0] == 76 and img[0, 7] == 29  # 0.299 * 255, 0.114 * 255


def test_rgba_alpha_is_dropped(tmp_path):
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 1] = 255  # green, fully transparent
    Image.fromarray(rgba, "RGBA").save(tmp_path / "x.png")
    img = read_xray(tmp_path / "x.png")
    assert img.shape == (4, 4) and np.all(img == 150)  # 0.587 * 255


def test_16bit_png_scaled_by_min_max(tmp_path):
    a = np.linspace(1000, 5000, 40 * 30).reshape(40, 30).astype(np.uint16)
    Image.fromarray(a).save(tmp_path / "x.png")
    img = read_xray(tmp_path / "x.png")
    assert img.dtype == np.uint8 and img.min() == 0 and img.max() == 255
    assert np.all(np.diff(img.ravel().astype(int)) >= 0)  # order kept


def test_float_tiff_and_constant_image(tmp_path):
    a = np.linspace(-1, 1, 20 * 10, dtype=np.float32).reshape(20, 10)
    Image.fromarray(a).save(tmp_path / "f.tif")
    img = read_xray(tmp_path / "f.tif")
    assert img[0, 0] == 0 and img[-1, -1] == 255 and 120 <= img[10, 0] <= 135
    Image.fromarray(np.full((5, 5), 3.5, np.float32)).save(tmp_path / "c.tif")
    assert np.all(read_xray(tmp_path / "c.tif") == 0)
    assert np.all(to_uint8(np.array([[np.nan, 1.0], [2.0, 3.0]])) == [[0, 0], [128, 255]])


def test_bmp_and_jpeg_and_resize(tmp_path):
    a = (np.arange(64 * 32) % 251).astype(np.uint8).reshape(64, 32)
    Image.fromarray(a).save(tmp_path / "x.bmp")
    np.testing.assert_array_equal(read_xray(tmp_path / "x.bmp"), a)
    Image.fromarray(a).save(tmp_path / "x.jpg", quality=95)
    small = read_xray(tmp_path / "x.jpg", size=(16, 8))
    assert small.shape == (16, 8) and small.dtype == np.uint8
    assert image_size(tmp_path / "x.jpg") == (64, 32)


def test_zero_byte_file(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageReadError, match="empty file") as e:
        read_xray(tmp_path / "empty.png")
    assert e.value.path == tmp_path / "empty.png" and "0 bytes" in e.value.problem
    assert str(e.value).startswith(f"cannot read {tmp_path / 'empty.png'}:")
    with pytest.raises(ImageReadError):
        image_size(tmp_path / "empty.png")


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_file(tmp_path, fmt):
    rng = np.random.default_rng(0)
    p = tmp_path / f"x.{fmt.lower()}"
    Image.fromarray(rng.integers(0, 255, (200, 100), dtype=np.uint8)).save(p, format=fmt)
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    with pytest.raises(ImageReadError, match="truncated"):
        read_xray(p)
    with pytest.raises(ImageReadError, match="truncated"):
        read_mask(p)


def test_text_saved_as_png(tmp_path):
    (tmp_path / "notes.png").write_text("patient 169: images missing\n")
    with pytest.raises(ImageReadError, match="not a recognised image"):
        read_xray(tmp_path / "notes.png")


def test_missing_file_and_bad_path_type(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        read_xray(tmp_path / "gone.jpg")
    with pytest.raises(TypeError):
        read_xray(123)
    with pytest.raises(ImageReadError, match="directory"):
        read_xray(tmp_path)


def test_broken_link_and_permission_denied(tmp_path, monkeypatch):
    os.symlink(tmp_path / "nowhere.jpg", tmp_path / "AP.jpg")
    with pytest.raises(FileNotFoundError, match=r"AP.jpg: broken symbolic link \(to .*nowhere.jpg\)"):
        read_xray(tmp_path / "AP.jpg")
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "x.png")

    def denied(*args, **kwargs):  # root can read any file: simulate a locked one
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Image, "open", denied)
    with pytest.raises(ImageReadError, match=r"x.png: permission denied"):
        read_mask(tmp_path / "x.png")


def test_max_pixels_guard_small(tmp_path):
    Image.fromarray(np.zeros((30, 40), np.uint8)).save(tmp_path / "x.png")
    with pytest.raises(ImageReadError, match=r"30 x 40 = 1,200 pixels.*max_pixels"):
        read_xray(tmp_path / "x.png", max_pixels=1000)
    with pytest.raises(ImageReadError, match="1,200 pixels"):
        read_mask(tmp_path / "x.png", max_pixels=1000)
    assert read_xray(tmp_path / "x.png", max_pixels=None).shape == (30, 40)


def test_max_pixels_checked_from_header_before_decoding(tmp_path):
    # 100 megapixels claimed, 16 bytes of data: our limit must trigger, not the decoder
    p = png_header_only(tmp_path / "big.png", 10_000, 10_000)
    assert image_size(p) == (10_000, 10_000)
    with pytest.raises(ImageReadError, match="100,000,000 pixels"):
        read_xray(p)


def test_decompression_bomb_is_our_error(tmp_path):
    # 400 megapixels: above twice PIL's MAX_IMAGE_PIXELS. The header still gives the size, and our
    # max_pixels limit (not PIL's guard) is the error, for both readers; PIL's guard is restored.
    from PIL import Image as PILImage

    p = png_header_only(tmp_path / "bomb.png", 20_000, 20_000)
    limit = PILImage.MAX_IMAGE_PIXELS
    assert image_size(p) == (20_000, 20_000)
    for reader in (read_xray, read_mask):
        with pytest.raises(ImageReadError, match=r"400,000,000 pixels.*max_pixels") as e:
            reader(p)
        assert str(p) in str(e.value)
    assert PILImage.MAX_IMAGE_PIXELS == limit


# ---------------------------------------------------------------------------------- masks


def test_mask_values_other_than_0_255(tmp_path):
    a = np.array([[0, 1, 128], [254, 0, 7]], np.uint8)
    Image.fromarray(a).save(tmp_path / "m.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "m.png"), a > 0)
    rgb = np.zeros((2, 3, 3), np.uint8)
    rgb[0, 0] = (0, 0, 10)  # faint blue: luminance 1
    rgb[1, 2] = (255, 0, 0)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    m = read_mask(tmp_path / "rgb.png")
    assert m.dtype == bool and m.sum() == 2 and m[0, 0] and m[1, 2]


def test_one_bit_mask_like_the_real_ones(tmp_path):
    m = np.zeros((9, 5), bool)
    m[2:5, 1:3] = True
    Image.fromarray(m.astype(np.uint8) * 255).convert("1").save(tmp_path / "m.png")
    assert Image.open(tmp_path / "m.png").mode == "1"
    out = read_mask(tmp_path / "m.png", shape=(9, 5))
    assert out.dtype == bool
    np.testing.assert_array_equal(out, m)


def test_mask_size_mismatch(tmp_path):
    Image.fromarray(np.zeros((10, 20), np.uint8)).save(tmp_path / "m.png")
    with pytest.raises(ImageReadError, match=r"mask is 10 x 20 .* but 12 x 20 was expected"):
        read_mask(tmp_path / "m.png", shape=(12, 20))


# ---------------------------------------------------------------------------------- DICOM


def test_dicom_monochrome2_and_1(tmp_path):
    a = np.tile(np.linspace(100, 4000, 16), (8, 1)).astype(np.uint16)
    p2 = _write_dicom(tmp_path / "m2.dcm", a)
    img = read_xray(p2)
    assert img.shape == (8, 16) and img.dtype == np.uint8
    assert img[0, 0] == 0 and img[0, -1] == 255
    assert image_size(p2) == (8, 16)
    p1 = _write_dicom(tmp_path / "m1.dcm", a, photometric="MONOCHROME1")
    np.testing.assert_array_equal(read_xray(p1), 255 - img)
    # DICM magic is recognised without the .dcm suffix
    p3 = tmp_path / "IM0001"
    p3.write_bytes(p2.read_bytes())
    np.testing.assert_array_equal(read_xray(p3), img)
    np.testing.assert_array_equal(read_mask(p2), a > 0)


def test_dicom_without_pixel_data(tmp_path):
    p = _write_dicom(tmp_path / "nopix.dcm", None, shape=(8, 8))
    with pytest.raises(ImageReadError, match="no pixel data"):
        read_xray(p)
    assert image_size(p) == (8, 8)


def test_dicom_undecodable_compression(tmp_path):
    from pydicom.uid import JPEGLSLossless

    p = _write_dicom(tmp_path / "jls.dcm", None, shape=(8, 8), syntax=JPEGLSLossless, encapsulated=b"\xff\xd8garbage")
    with pytest.raises(ImageReadError, match="cannot decode DICOM pixel data.*JPEG-LS"):
        read_xray(p)


def test_dicom_max_pixels_and_garbage(tmp_path):
    p = _write_dicom(tmp_path / "x.dcm", np.zeros((20, 30), np.uint16))
    with pytest.raises(ImageReadError, match="600 pixels"):
        read_xray(p, max_pixels=100)
    (tmp_path / "bad.dcm").write_bytes(b"not a dicom file at all")
    with pytest.raises(ImageReadError, match="DICOM"):
        read_xray(tmp_path / "bad.dcm")


# ---------------------------------------------------------------------------------- resizing


def test_resize_image_and_mask():
    img = (np.arange(100 * 60) % 256).astype(np.uint8).reshape(100, 60)
    out = resize_image(img, (50, 30))
    assert out.dtype == np.uint8 and out.shape == (50, 30)
    m = np.zeros((300, 200), bool)
    m[:, 100:103] = True  # a 3-px line, 1% of the width
    near = resize_mask(m, (60, 40))
    assert near.dtype == bool and near.shape == (60, 40)
    assert abs(near.mean() - m.mean()) < 0.02  # nearest keeps the area of thin lines
    assert resize_mask(m, (60, 40), method="area").sum() == 0  # area + 0.5 erases them
    big = np.zeros((300, 200), bool)
    big[50:250, 40:160] = True
    area = resize_mask(big, (60, 40), method="area")
    assert abs(area.mean() - big.mean()) < 0.01
    with pytest.raises(ValueError, match="unknown resize method"):
        resize_mask(m, (10, 10), method="cubic")
    with pytest.raises(ValueError, match="positive"):
        resize_image(img, (0, 5))



@pytest.mark.parametrize("shape,size", [((64, 32, 3), (613, 290)), ((64, 32, 2), (50, 21)),
                                        ((7, 5), (31, 3)), ((1, 9, 2), (4, 5)), ((16, 8, 1), (16, 8))])
def test_resize_probabilities_gives_skimage_values(shape, size):
    """The matrix-product resize is skimage's bilinear resize (mirrored border, no anti-aliasing),
    up and down, 2-D and multi-channel, to float32 round-off: full-resolution Dice keeps its values."""
    from skimage.transform import resize

    prob = np.random.default_rng(0).random(shape).astype(np.float32)
    want = resize(prob, size + shape[2:], order=1, preserve_range=True, anti_aliasing=False)
    got = resize_probabilities(prob, size)
    assert got.shape == want.shape and got.dtype == np.float32
    assert np.abs(got - want).max() < 1e-6
    with pytest.raises(ValueError, match="probabilities"):
        resize_probabilities(prob[None, None], size)


# ---------------------------------------------------------------------------------- writing


def _temp_files(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]


def test_save_png_round_trip_and_no_temp_files(tmp_path):
    m = np.zeros((12, 7), bool)
    m[3:9, 2:5] = True
    save_png(tmp_path / "out" / "mask.png", m)
    assert Image.open(tmp_path / "out" / "mask.png").mode == "1"
    np.testing.assert_array_equal(read_mask(tmp_path / "out" / "mask.png"), m)
    g = (np.arange(12 * 7) * 3 % 256).astype(np.uint8).reshape(12, 7)
    save_png(tmp_path / "out" / "mask.png", g)  # overwrite
    np.testing.assert_array_equal(read_xray(tmp_path / "out" / "mask.png"), g)
    save_jpeg(tmp_path / "out" / "x.jpg", g, quality=90)
    assert np.abs(read_xray(tmp_path / "out" / "x.jpg").astype(int) - g).mean() < 12
    assert _temp_files(tmp_path / "out") == []
    with pytest.raises(TypeError, match="float"):
        save_png(tmp_path / "f.png", np.zeros((3, 3), np.float32))
    with pytest.raises(ValueError, match="quality"):
        save_jpeg(tmp_path / "q.jpg", g, quality=0)


def test_interrupted_write_keeps_old_file(tmp_path, monkeypatch):
    target = tmp_path / "x.png"
    save_png(target, np.full((4, 4), 10, np.uint8))
    before = target.read_bytes()

    def crash(*args, **kwargs):
        raise KeyboardInterrupt("power cut")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        save_png(target, np.full((4, 4), 200, np.uint8))
    monkeypatch.undo()
    assert target.read_bytes() == before
    assert _temp_files(tmp_path) == []
    atomic_write_bytes(target, b"abc")
    assert target.read_bytes() == b"abc" and _temp_files(tmp_path) == []
    assert oct(target.stat().st_mode & 0o777) == oct(0o644)
    with pytest.raises(TypeError):
        atomic_write_bytes(target, "text")
