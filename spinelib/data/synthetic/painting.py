"""The film of a synthetic X-ray: the attenuation painter (bone, soft tissue, gas drawn as
attenuation), the background of the body around the column, the texture and the exposure that turns
attenuation into grey levels. :mod:`spinelib.data.synthetic.rendering` draws the views with them."""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw, ImageFilter
from scipy import ndimage as ndi
from skimage.draw import line as draw_line
from skimage.transform import resize

from spinelib.data.synthetic.anatomy import ellipse, perpendicular, unit_vector


def _polygon_image(polys, shape: tuple[int, int], offset=(0.0, 0.0)) -> np.ndarray:
    """Rasterise polygons ``(k, 2)`` of ``(x, y)`` points into a ``uint8`` 0/1 array (PIL scan fill)."""
    im = Image.new("L", (shape[1], shape[0]), 0)
    draw = ImageDraw.Draw(im)
    for poly in polys:
        pts = np.asarray(poly, float) - offset
        if len(pts) >= 3 and np.isfinite(pts).all():
            draw.polygon(pts.ravel().tolist(), fill=1)
    return np.asarray(im)


def _blur_u8(a: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of a uint8 array (PIL's box approximation: cost independent of sigma)."""
    if sigma < 0.3:
        return a
    return np.asarray(Image.fromarray(a).filter(ImageFilter.GaussianBlur(float(sigma))))


class Painter:
    """A float32 attenuation image plus window-by-window rasterisation of polygons into it
    and into boolean masks (only the polygon's bounding box is touched)."""

    def __init__(self, image: np.ndarray, texture: np.ndarray):
        self.image = image
        self.shape = image.shape
        self.texture = texture

    def rasterize(self, poly: np.ndarray):
        H, W = self.shape
        x0 = max(int(math.floor(poly[:, 0].min())) - 1, 0)
        x1 = min(int(math.ceil(poly[:, 0].max())) + 2, W)
        y0 = max(int(math.floor(poly[:, 1].min())) - 1, 0)
        y1 = min(int(math.ceil(poly[:, 1].max())) + 2, H)
        if x1 <= x0 or y1 <= y0:
            return None, None
        m = _polygon_image([poly], (y1 - y0, x1 - x0), (x0, y0)).view(bool)
        return (y0, y1, x0, x1), m

    def bone(self, poly: np.ndarray, fill: float, rim: float = 0.0, rim_width: float = 1.0,
             texture: float = 0.0, mask: np.ndarray | None = None) -> None:
        """Add ``fill + rim * exp(-d / rim_width) + texture * noise`` inside the polygon, where
        ``d`` is the distance to its outline (a bright cortex); mark the polygon in ``mask``."""
        win, m = self.rasterize(poly)
        if win is None or not m.any():
            return
        y0, y1, x0, x1 = win
        if mask is not None:
            mask[y0:y1, x0:x1] |= m
        val = np.full(m.shape, fill, np.float32)
        if rim:
            d = ndi.distance_transform_edt(m)
            val += (rim * np.exp(-d / max(rim_width, 0.5))).astype(np.float32)
        if texture:
            T = self.texture.shape[0]
            val += texture * self.texture[np.ix_(np.arange(y0, y1) % T, np.arange(x0, x1) % T)]
        self.image[y0:y1, x0:x1] += val * m

    def line_mask(self, points: np.ndarray, width: float, mask: np.ndarray) -> None:
        """Mark a polyline of ``width`` pixels in ``mask``."""
        H, W = self.shape
        if width <= 1.5:
            for p, q in zip(points[:-1], points[1:]):
                rr, cc = draw_line(int(round(p[1])), int(round(p[0])), int(round(q[1])), int(round(q[0])))
                ok = (rr >= 0) & (rr < H) & (cc >= 0) & (cc < W)
                mask[rr[ok], cc[ok]] = True
            return
        polys = []
        for p, q in zip(points[:-1], points[1:]):
            nrm = perpendicular(unit_vector(q - p)) * width / 2
            polys.append(np.array([p + nrm, q + nrm, q - nrm, p - nrm]))
        polys += [ellipse(p, np.array([1.0, 0]), np.array([0, 1.0]), width / 2, width / 2, 12) for p in points]
        lo = np.floor(points.min(axis=0) - width).astype(int)
        hi = np.ceil(points.max(axis=0) + width).astype(int) + 1
        x0, y0 = max(lo[0], 0), max(lo[1], 0)
        x1, y1 = min(hi[0], W), min(hi[1], H)
        if x1 > x0 and y1 > y0:
            mask[y0:y1, x0:x1] |= _polygon_image(polys, (y1 - y0, x1 - x0), (x0, y0)).view(bool)


class Background:
    """A low-resolution attenuation map (``factor`` times smaller) drawn in full-resolution
    pixel coordinates, upsampled bilinearly at the end."""

    def __init__(self, shape: tuple[int, int], factor: int):
        H, W = shape
        self.full = shape
        self.shape = (max(2, math.ceil(H / factor)), max(2, math.ceil(W / factor)))
        self.sy, self.sx = self.shape[0] / H, self.shape[1] / W
        self.a = np.zeros(self.shape, np.float32)
        yy, xx = np.mgrid[0:self.shape[0], 0:self.shape[1]].astype(np.float32)
        self.Y, self.X = (yy + 0.5) / self.sy - 0.5, (xx + 0.5) / self.sx - 0.5  # full-res coords

    def mask(self, *polys: np.ndarray) -> np.ndarray:
        """Union of polygons given in full-resolution pixels, as a low-resolution uint8 0/1 map."""
        scale = np.array([self.sx, self.sy])
        return _polygon_image([(np.asarray(p) + 0.5) * scale - 0.5 for p in polys], self.shape)

    def blur(self, m: np.ndarray, sigma_px: float) -> np.ndarray:
        """Blur a 0/1 (or 0..1) map with a full-resolution sigma; returns float32 0..1."""
        u8 = m.astype(np.uint8) * 255 if m.max() <= 1 else m.astype(np.uint8)
        return _blur_u8(u8, sigma_px * self.sy).astype(np.float32) / 255.0

    def soft(self, m: np.ndarray, amount: float, sigma_px: float) -> None:
        """Add ``amount`` over the (blurred) region: soft tissue, air, organs."""
        self.a += amount * self.blur(m, sigma_px)

    def bone(self, m: np.ndarray, fill: float, rim: float, rim_width_px: float, texture: float = 0.0,
             rng=None) -> None:
        """Bone with a bright cortex: ``fill`` inside, ``+ rim`` fading inwards over about
        ``rim_width_px`` from the outline (``2 (1 - blur(m))`` inside the shape); ``texture``
        modulates the fill by ``1 + texture * noise`` (trabecular pattern)."""
        if not m.any():
            return
        inside = self.blur(m, 1.2 / self.sy)  # anti-aliased edge (1.2 low-res pixels)
        edge = np.clip(2.0 * (1.0 - self.blur(m, rim_width_px)), 0, 1)
        val = fill * inside
        if texture and rng is not None:
            val = val * (1 + texture * self.fine_noise(rng, 3.0 / self.sy))
        self.a += (val + rim * edge * inside ** 2).astype(np.float32)

    def smooth_field(self, rng, cells: int = 6) -> np.ndarray:
        coarse = rng.standard_normal((cells, max(2, round(cells * self.shape[1] / self.shape[0]))))
        return resize(coarse, self.shape, order=3, mode="edge").astype(np.float32)

    def profile(self, keys_y, keys_v, sigma_px: float) -> np.ndarray:
        """A smooth function of the row: ``keys`` interpolated, then Gaussian-smoothed along y;
        returned as a column ``(h, 1)`` that broadcasts over the map."""
        rows = self.Y[:, 0]
        v = np.interp(rows, keys_y, keys_v)
        return ndi.gaussian_filter1d(v, max(0.5, sigma_px * self.sy), mode="nearest")[:, None].astype(np.float32)

    def fine_noise(self, rng, sigma_px: float) -> np.ndarray:
        n = ndi.gaussian_filter(rng.standard_normal(self.shape).astype(np.float32), max(0.5, sigma_px * self.sy))
        return n / (n.std() + 1e-9)

    def upsample(self) -> np.ndarray:
        H, W = self.full
        img = Image.fromarray(self.a.astype(np.float32))
        return np.array(img.resize((W, H), Image.Resampling.BILINEAR), dtype=np.float32)


def texture_tile(rng, scale: float, size: int = 256) -> np.ndarray:
    """Trabecular-like band-passed noise tile (zero mean, unit-ish std), periodic."""
    fine = ndi.gaussian_filter(rng.standard_normal((size, size)), max(0.8, 3.5 * scale), mode="wrap")
    coarse = ndi.gaussian_filter(rng.standard_normal((size, size)), max(2.0, 12.0 * scale), mode="wrap")
    t = fine / fine.std() + 0.6 * coarse / coarse.std()
    return (t / t.std()).astype(np.float32)


def _noise_field(rng, shape: tuple[int, int]) -> np.ndarray:
    """Unit white noise of ``shape``: two random periodic tiles of co-prime sizes (509, 521),
    rolled at random and summed, so the pattern never repeats within an image (much faster
    than drawing one normal number per pixel)."""
    H, W = shape
    out = np.empty(shape, np.float32)
    for j, T in enumerate((509, 521)):
        tile = rng.standard_normal((T, T), dtype=np.float32) * np.float32(1 / math.sqrt(2))
        tile = np.roll(tile, (-int(rng.integers(T)), -int(rng.integers(T))), axis=(0, 1))
        for y in range(0, H, T):
            for x in range(0, W, T):
                blk = tile[: min(T, H - y), : min(T, W - x)]
                if j == 0:
                    out[y:y + T, x:x + T] = blk
                else:
                    out[y:y + T, x:x + T] += blk
    return out


def _lowpass(a: np.ndarray, sigma: float) -> np.ndarray:
    """Large-scale Gaussian low-pass of a float32 image, computed at 1/8 resolution."""
    H, W = a.shape
    f = 8
    small = np.asarray(Image.fromarray(a).resize((max(1, W // f), max(1, H // f)), Image.Resampling.BOX))
    small = ndi.gaussian_filter(small, sigma / f, mode="nearest").astype(np.float32)
    return np.array(Image.fromarray(small).resize((W, H), Image.Resampling.BILINEAR))


def expose(a: np.ndarray, rng, scale: float) -> np.ndarray:
    """Attenuation -> 8-bit image, as a digital radiograph is processed:

    1. dynamic-range compression and detail gain around a large-scale low-pass ``L``
       (:math:`A' = c L + g (A - L)`, :math:`c \approx 0.6`, :math:`g \approx 1.8`);
    2. quantum-like noise of std :math:`\sigma \sqrt{A' + 0.2}`;
    3. exposure :math:`I = 1 - e^{-\kappa A'}`, a random window and gamma,
       :math:`g = 255\,\mathrm{clip}((I - lo) / (hi - lo), 0, 1)^{\gamma}`;
    4. a slight blur (box filter of radius 0.5-1 px at scale 1).
    """
    H, W = a.shape
    c = rng.uniform(0.55, 0.75)
    gain = rng.uniform(1.4, 1.9)
    kappa = rng.uniform(0.85, 1.1)
    gamma = rng.uniform(0.85, 1.2)
    lo = rng.uniform(0.0, 0.06)
    hi = rng.uniform(0.9, 1.0)
    sigma = rng.uniform(0.02, 0.04)
    blur = rng.uniform(0.5, 1.0) * scale
    low = _lowpass(a, 0.03 * max(H, W))
    a -= low
    a *= np.float32(gain)
    low *= np.float32(c)
    a += low
    np.clip(a, 0, None, out=a)
    nb, amax = 4096, 4.0
    k = (nb - 1) / amax
    grid = np.linspace(0, amax, nb)
    level = np.clip(((1 - np.exp(-kappa * grid)) - lo) / (hi - lo), 0, 1) ** gamma
    lut = np.round(255 * level).astype(np.uint8)
    noise_std = (sigma * k * np.sqrt(grid + 0.2)).astype(np.float32)
    a *= np.float32(k)
    np.clip(a, 0, nb - 1, out=a)
    noise = _noise_field(rng, a.shape)
    noise *= noise_std[a.astype(np.uint16)]
    a += noise
    np.clip(a, 0, nb - 1, out=a)
    img = Image.fromarray(lut[a.astype(np.uint16)])
    if blur >= 0.3:
        img = img.filter(ImageFilter.BoxBlur(float(blur)))
    return np.asarray(img)
