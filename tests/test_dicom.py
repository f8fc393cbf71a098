"""DICOM read the way scanners mean it: modality LUT, then VOI LUT or window, then MONOCHROME1,
first frame only, pixel spacing with the tag it came from (spinelib.core.dicom.read_dicom); the readers of
spinelib.core.imageio on DICOM files."""

from __future__ import annotations

import numpy as np
import pytest

from spinelib.core import imageio
from spinelib.core.dicom import read_dicom
from spinelib.core.imageio import (
    ImageReadError,
    image_size,
    read_mask,
    read_xray,
)
from spinelib.data.bad_inputs.file_makers import write_dicom


RAMP = np.tile(np.arange(0, 4096, 256, dtype=np.uint16), (4, 1))  # 4 x 16, stored 0..3840


def test_8_bit_is_kept_and_16_bit_is_min_max_scaled(tmp_path):
    a = np.tile(np.arange(10, 170, 10, dtype=np.uint8), (3, 1))
    img, info = read_dicom(write_dicom(tmp_path / "a.dcm", a, bits=8))
    assert img.dtype == np.uint8 and img.shape == (3, 16)
    np.testing.assert_array_equal(img, a)  # 8-bit values are display values already, as in a PNG
    img16, _ = read_dicom(write_dicom(tmp_path / "b.dcm", a.astype(np.uint16) * 20, bits_stored=12))
    assert img16[0, 0] == 0 and img16[0, -1] == 255 and np.all(np.diff(img16[0].astype(int)) > 0)
    assert info["voi"] is None and info["modality_lut"] is None and info["frames"] == 1
    assert info["pixel_spacing_mm"] is None and info["pixel_spacing_source"] is None


def test_monochrome1_is_inverted(tmp_path):
    m2, _ = read_dicom(write_dicom(tmp_path / "m2.dcm", RAMP, bits_stored=12))
    m1, info = read_dicom(write_dicom(tmp_path / "m1.dcm", RAMP, bits_stored=12, photometric="MONOCHROME1"))
    assert info["photometric"] == "MONOCHROME1"
    np.testing.assert_array_equal(m1, 255 - m2)
    assert m1[0, 0] == 255  # stored 0 is white in MONOCHROME1


def test_rescale_is_applied_before_the_window(tmp_path):
    # stored 0..3840, HU = stored - 1024; window centre 0, width 512 on the rescaled values:
    # stored 768 (-256 HU) and below -> 0, stored 1280 (+256) and above -> 255, stored 1024 -> mid grey
    p = write_dicom(tmp_path / "r.dcm", RAMP, bits_stored=12, RescaleSlope=1, RescaleIntercept=-1024,
                    WindowCenter=0, WindowWidth=512)
    img, info = read_dicom(p)
    assert info["modality_lut"] == "rescale" and info["voi"] == "window"
    row = dict(zip(RAMP[0].tolist(), img[0].tolist()))
    assert row[0] == 0 and row[768] == 0 and row[1280] == 255 and row[3840] == 255
    assert 120 <= row[1024] <= 135
    # without the rescale the same window would put every stored value >= 256 at white
    no_rescale, _ = read_dicom(write_dicom(tmp_path / "n.dcm", RAMP, bits_stored=12, WindowCenter=0, WindowWidth=512))
    assert no_rescale[0, 2] == 255 and row[512] == 0


def test_negative_slope_and_signed_pixels(tmp_path):
    signed = (RAMP.astype(np.int32) - 2048).astype(np.int16)
    img, _ = read_dicom(write_dicom(tmp_path / "s.dcm", signed, signed=True, RescaleSlope=-1, RescaleIntercept=0))
    # slope -1 reverses the ramp: the highest stored value is the darkest
    assert img[0, 0] == 255 and img[0, -1] == 0


def test_first_of_several_windows_is_used(tmp_path):
    p = write_dicom(tmp_path / "w.dcm", RAMP, bits_stored=12, WindowCenter=[1024, 3000], WindowWidth=[256, 4000])
    img, info = read_dicom(p)
    assert info["voi"] == "window"
    row = dict(zip(RAMP[0].tolist(), img[0].tolist()))
    assert row[768] == 0 and row[1280] == 255  # only the narrow first window saturates this fast


def test_voi_lut_sequence_is_preferred_to_the_window(tmp_path):
    from pydicom.dataset import Dataset

    lut = Dataset()
    # 4096 entries from stored value 0, 8-bit output: a step at 2048
    lut.LUTDescriptor = [4096, 0, 8]
    lut.LUTData = [0] * 2048 + [255] * 2048
    lut["LUTData"].VR = "US"
    p = write_dicom(tmp_path / "lut.dcm", RAMP, bits_stored=12, VOILUTSequence=[lut], WindowCenter=100,
                    WindowWidth=10)
    img, info = read_dicom(p)
    assert info["voi"] == "lut"
    np.testing.assert_array_equal(img[0], np.where(RAMP[0] < 2048, 0, 255))


def test_multi_frame_reads_the_first_frame_only(tmp_path):
    frames = np.stack([RAMP, RAMP[:, ::-1], np.full_like(RAMP, 7)])
    p = write_dicom(tmp_path / "mf.dcm", frames, bits_stored=12)
    img, info = read_dicom(p)
    assert info["frames"] == 3 and img.shape == (4, 16)
    assert img[0, 0] == 0 and img[0, -1] == 255  # frame 0's ramp, not frame 1's reversed one
    assert image_size(p) == (4, 16)
    np.testing.assert_array_equal(read_mask(p), RAMP > 0)


def test_multi_frame_decodes_one_frame(tmp_path, monkeypatch):
    """Only frame 0 is requested from pydicom (index=0), never the whole stack."""
    import pydicom.pixels

    calls = []
    real = pydicom.pixels.pixel_array

    def spy(src, **kwargs):
        calls.append(kwargs.get("index"))
        return real(src, **kwargs)

    monkeypatch.setattr(pydicom.pixels, "pixel_array", spy)
    read_dicom(write_dicom(tmp_path / "mf.dcm", np.stack([RAMP] * 4), bits_stored=12))
    assert calls == [0]


@pytest.mark.parametrize("tags, spacing, source", [
    ({"PixelSpacing": [0.14, 0.15], "ImagerPixelSpacing": [0.2, 0.2]}, (0.14, 0.15), "PixelSpacing"),
    ({"ImagerPixelSpacing": [0.175, 0.18]}, (0.175, 0.18), "ImagerPixelSpacing"),
    ({}, None, None),
])
def test_pixel_spacing_and_its_tag(tmp_path, tags, spacing, source):
    _, info = read_dicom(write_dicom(tmp_path / "p.dcm", RAMP, bits_stored=12, **tags))
    assert info["pixel_spacing_source"] == source
    if spacing is None:
        assert info["pixel_spacing_mm"] is None
    else:
        np.testing.assert_allclose(info["pixel_spacing_mm"], spacing)


def test_read_xray_uses_the_same_pipeline(tmp_path):
    p = write_dicom(tmp_path / "x.dcm", RAMP, bits_stored=12, RescaleSlope=1, RescaleIntercept=-1024,
                    WindowCenter=0, WindowWidth=512, photometric="MONOCHROME1")
    np.testing.assert_array_equal(read_xray(p), read_dicom(p)[0])
    no_preamble = write_dicom(tmp_path / "np.dcm", RAMP, bits_stored=12, preamble=False)
    np.testing.assert_array_equal(read_dicom(no_preamble)[0], read_dicom(write_dicom(tmp_path / "y.dcm", RAMP))[0])


def test_compressed_syntax_without_its_decoder_names_the_extra(tmp_path):
    from pydicom.pixels import get_decoder
    from pydicom.uid import JPEGLosslessSV1

    if get_decoder(JPEGLosslessSV1).is_available:
        pytest.skip("a JPEG Lossless decoder is installed here (spinelib[dicom]); nothing to refuse")
    p = write_dicom(tmp_path / "jl.dcm", None, shape=(8, 8), syntax=JPEGLosslessSV1, encapsulated=b"\xff\xd8junk")
    with pytest.raises(ImageReadError) as err:
        read_dicom(p)
    msg = str(err.value)
    assert "JPEG Lossless" in msg and "1.2.840.10008.1.2.4.70" in msg and "spinelib[dicom]" in msg
    assert str(p) in msg


def test_undecodable_bytes_with_an_available_decoder(tmp_path):
    from pydicom.uid import RLELossless

    p = write_dicom(tmp_path / "rle.dcm", None, shape=(8, 8), syntax=RLELossless, encapsulated=b"not rle at all")
    with pytest.raises(ImageReadError, match="cannot decode DICOM pixel data.*RLE Lossless"):
        read_dicom(p)


def test_not_dicom_and_no_pixels(tmp_path):
    (tmp_path / "bad.dcm").write_bytes(b"not a dicom file at all")
    with pytest.raises(ImageReadError, match="DICOM"):
        read_dicom(tmp_path / "bad.dcm")
    with pytest.raises(ImageReadError, match="no pixel data"):
        read_dicom(write_dicom(tmp_path / "nopix.dcm", None, shape=(4, 4)))
    with pytest.raises(FileNotFoundError):
        read_dicom(tmp_path / "missing.dcm")


def test_a_real_jpeg_ls_file_decodes_with_the_extra_or_names_it():
    """pydicom's own JPEG-LS lossless sample (MR_small_jpeg_ls_lossless.dcm): the same pixels as its
    uncompressed twin when spinelib[dicom] is installed, else the error naming the extra."""
    from pydicom.data import get_testdata_file
    from pydicom.pixels import get_decoder
    from pydicom.uid import JPEGLSLossless

    jls, plain = get_testdata_file("MR_small_jpeg_ls_lossless.dcm"), get_testdata_file("MR_small.dcm")
    if jls is None or plain is None:
        pytest.skip("pydicom's test files are not installed")
    if get_decoder(JPEGLSLossless).is_available:
        img, info = read_dicom(jls)
        np.testing.assert_array_equal(img, read_dicom(plain)[0])
        assert "JPEG-LS" in info["transfer_syntax"]
    else:
        with pytest.raises(ImageReadError, match=r"JPEG-LS Lossless.*spinelib\[dicom\]"):
            read_dicom(jls)


def test_the_old_import_path_still_reads_dicom():
    """``spinelib.core.imageio`` re-exports the DICOM reader it used to hold."""
    from spinelib.core import dicom

    assert imageio.read_dicom is dicom.read_dicom and imageio.dicom_pixel_spacing is dicom.dicom_pixel_spacing
    assert imageio.DICOM_EXTRA_HINT == dicom.DICOM_EXTRA_HINT

