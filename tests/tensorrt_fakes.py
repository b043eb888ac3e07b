"""Stand-ins for `tensorrt` and cuda-python's `cuda.bindings.runtime`, so the plan path runs on a CPU.

They keep the documented API that export/tensorrt.py calls (TensorRT 10: Builder, OnnxParser, build_serialized_network,
Runtime.deserialize_cuda_engine, set_input_shape / set_tensor_address / execute_async_v3; cuda-python: calls return
(error, *values)) and check how it is called: the builder records the profile and the fp16 flag; a "plan" is that
record plus the ONNX bytes, which the engine runs with ONNX Runtime, its float outputs rounded through float16 as a
real fp16 plan's would be; "device memory" is host memory the fake runtime allocates, so copies in the wrong
direction, buffers too small, unset tensor addresses, calls on freed memory and leaks all fail loudly.

Not the real thing: what they cannot show (kernels, TensorRT's ONNX parser, the driver) is for the @gpu test.
"""

from __future__ import annotations

import ctypes
import enum
import json
import types
from typing import Any

import numpy as np

_MAGIC = b"FAKEPLAN"
_ORT_TYPES = {"tensor(float)": np.float32, "tensor(int64)": np.int64, "tensor(int32)": np.int32,
              "tensor(uint8)": np.uint8, "tensor(float16)": np.float16, "tensor(bool)": np.bool_}


# --- cuda.bindings.runtime ----------------------------------------------------------------------------------


class cudaError_t(enum.IntEnum):  # noqa: N801 - cuda-python's names
    cudaSuccess = 0
    cudaErrorInvalidValue = 1
    cudaErrorMemoryAllocation = 2
    cudaErrorInsufficientDriver = 35
    cudaErrorNoDevice = 100


class cudaMemcpyKind(enum.IntEnum):  # noqa: N801
    cudaMemcpyHostToDevice = 1
    cudaMemcpyDeviceToHost = 2


class cudaStream_t:  # noqa: N801
    _next = 0x5000

    def __init__(self) -> None:
        cudaStream_t._next += 16
        self.handle = cudaStream_t._next

    def __int__(self) -> int:
        return self.handle


_STRINGS = {
    cudaError_t.cudaSuccess: "no error",
    cudaError_t.cudaErrorInvalidValue: "invalid argument",
    cudaError_t.cudaErrorMemoryAllocation: "out of memory",
    cudaError_t.cudaErrorInsufficientDriver: "CUDA driver version is insufficient for CUDA runtime version",
    cudaError_t.cudaErrorNoDevice: "no CUDA-capable device is detected",
}


class FakeCudaRuntime(types.ModuleType):
    """`cuda.bindings.runtime` over host memory; `devices` and `device_error` set what cudaGetDeviceCount says."""

    cudaError_t = cudaError_t
    cudaMemcpyKind = cudaMemcpyKind
    cudaStream_t = cudaStream_t

    def __init__(self, devices: int = 1, device_error: cudaError_t = cudaError_t.cudaSuccess) -> None:
        super().__init__("cuda.bindings.runtime")
        self.devices, self.device_error = devices, device_error
        self.memory: dict[int, ctypes.Array] = {}  # live allocations by address
        self.streams: dict[int, cudaStream_t] = {}
        self.copies: list[tuple[str, int]] = []  # (direction, bytes), in order

    def cudaGetDeviceCount(self) -> tuple[cudaError_t, int | None]:  # noqa: N802
        if self.device_error != cudaError_t.cudaSuccess:
            return self.device_error, None
        return cudaError_t.cudaSuccess, self.devices

    def cudaGetErrorName(self, error: cudaError_t) -> tuple[cudaError_t, bytes]:  # noqa: N802
        return cudaError_t.cudaSuccess, cudaError_t(error).name.encode()

    def cudaGetErrorString(self, error: cudaError_t) -> tuple[cudaError_t, bytes]:  # noqa: N802
        return cudaError_t.cudaSuccess, _STRINGS[cudaError_t(error)].encode()

    def cudaMalloc(self, size: int) -> tuple[cudaError_t, int]:  # noqa: N802
        if not isinstance(size, int) or size <= 0:
            return cudaError_t.cudaErrorInvalidValue, 0
        buffer = ctypes.create_string_buffer(size)
        self.memory[ctypes.addressof(buffer)] = buffer
        return cudaError_t.cudaSuccess, ctypes.addressof(buffer)

    def cudaFree(self, pointer: int) -> tuple[cudaError_t]:  # noqa: N802
        if self.memory.pop(pointer, None) is None:
            return (cudaError_t.cudaErrorInvalidValue,)
        return (cudaError_t.cudaSuccess,)

    def cudaStreamCreate(self) -> tuple[cudaError_t, cudaStream_t]:  # noqa: N802
        stream = cudaStream_t()
        self.streams[int(stream)] = stream
        return cudaError_t.cudaSuccess, stream

    def cudaStreamDestroy(self, stream: cudaStream_t) -> tuple[cudaError_t]:  # noqa: N802
        return (cudaError_t.cudaSuccess if self.streams.pop(int(stream), None) else cudaError_t.cudaErrorInvalidValue,)

    def cudaStreamSynchronize(self, stream: cudaStream_t) -> tuple[cudaError_t]:  # noqa: N802
        return (cudaError_t.cudaSuccess if int(stream) in self.streams else cudaError_t.cudaErrorInvalidValue,)

    def device_size(self, pointer: int) -> int:
        """Bytes of the live allocation that starts at `pointer`; AssertionError for anything else."""
        assert pointer in self.memory, f"{pointer:#x} is not live device memory"
        return ctypes.sizeof(self.memory[pointer])

    def cudaMemcpyAsync(self, dst: int, src: int, count: int, kind: cudaMemcpyKind, stream: cudaStream_t):  # noqa: N802
        assert int(stream) in self.streams, "a copy on a stream that does not exist"
        assert isinstance(dst, int) and isinstance(src, int), "pointers are ints here"
        if kind == cudaMemcpyKind.cudaMemcpyHostToDevice:
            assert src not in self.memory, "host-to-device from device memory"
            assert count <= self.device_size(dst), "copy past the end of a device buffer"
        elif kind == cudaMemcpyKind.cudaMemcpyDeviceToHost:
            assert dst not in self.memory, "device-to-host into device memory"
            assert count <= self.device_size(src), "copy past the end of a device buffer"
        else:
            raise AssertionError(f"unexpected copy kind {kind!r}")
        ctypes.memmove(dst, src, count)
        self.copies.append((cudaMemcpyKind(kind).name, count))
        return (cudaError_t.cudaSuccess,)


# --- tensorrt ---------------------------------------------------------------------------------------------


class _Logger:
    WARNING = 2
    INFO = 3

    def __init__(self, severity: int = 2) -> None:
        self.severity = severity


class TensorIOMode(enum.Enum):
    NONE = 0
    INPUT = 1
    OUTPUT = 2


class BuilderFlag(enum.Enum):
    FP16 = 0
    INT8 = 1


class _Network:
    def __init__(self, flags: int) -> None:
        assert flags == 0, "TensorRT 10 networks take no creation flags"
        self.onnx: bytes | None = None


class _OnnxParser:
    def __init__(self, network: _Network, logger: _Logger) -> None:
        self.network = network
        self.num_errors = 0

    def parse_from_file(self, path: str) -> bool:
        assert isinstance(path, str)
        with open(path, "rb") as f:
            self.network.onnx = f.read()
        return True

    def get_error(self, index: int) -> str:
        raise AssertionError("no errors were reported")


class _Profile:
    def __init__(self) -> None:
        self.shapes: dict[str, tuple[list[int], list[int], list[int]]] = {}

    def set_shape(self, name: str, low: tuple[int, ...], opt: tuple[int, ...], high: tuple[int, ...]) -> None:
        assert len(low) == len(opt) == len(high) and all(a <= b <= c for a, b, c in zip(low, opt, high))
        self.shapes[name] = (list(low), list(opt), list(high))


class _BuilderConfig:
    def __init__(self) -> None:
        self.flags: set[BuilderFlag] = set()
        self.profiles: list[_Profile] = []

    def set_flag(self, flag: BuilderFlag) -> None:
        self.flags.add(flag)

    def add_optimization_profile(self, profile: _Profile) -> int:
        self.profiles.append(profile)
        return len(self.profiles) - 1


class _Builder:
    def __init__(self, logger: _Logger) -> None:
        pass

    def create_network(self, flags: int = 0) -> _Network:
        return _Network(flags)

    def create_builder_config(self) -> _BuilderConfig:
        return _BuilderConfig()

    def create_optimization_profile(self) -> _Profile:
        return _Profile()

    def build_serialized_network(self, network: _Network, config: _BuilderConfig) -> bytes:
        assert network.onnx is not None, "nothing was parsed into the network"
        assert len(config.profiles) == 1, "one optimisation profile"
        header = json.dumps({"fp16": BuilderFlag.FP16 in config.flags, "profile": config.profiles[0].shapes}).encode()
        return _MAGIC + len(header).to_bytes(4, "little") + header + network.onnx


def read_plan(plan: bytes) -> tuple[dict[str, Any], bytes]:
    """(the builder's record: fp16 flag and profile, the ONNX bytes) of a fake plan."""
    assert plan.startswith(_MAGIC), "not a plan of the fake builder"
    size = int.from_bytes(plan[8:12], "little")
    return json.loads(plan[12 : 12 + size]), plan[12 + size :]


class _Engine:
    def __init__(self, fake: FakeTensorRT, plan: bytes) -> None:
        import onnxruntime as ort

        self.fake = fake
        self.record, onnx = read_plan(plan)
        self.session = ort.InferenceSession(onnx, providers=["CPUExecutionProvider"])
        inputs = [(i.name, TensorIOMode.INPUT, _ORT_TYPES[i.type]) for i in self.session.get_inputs()]
        outputs = [(o.name, TensorIOMode.OUTPUT, _ORT_TYPES[o.type]) for o in self.session.get_outputs()]
        # TensorRT's order is its own: interleave outputs before inputs so that nothing relies on it.
        self.io = outputs[::-1] + inputs[::-1]

    @property
    def num_io_tensors(self) -> int:
        return len(self.io)

    def get_tensor_name(self, index: int) -> str:
        return self.io[index][0]

    def get_tensor_mode(self, name: str) -> TensorIOMode:
        return next(mode for n, mode, _ in self.io if n == name)

    def get_tensor_dtype(self, name: str) -> np.dtype:
        return np.dtype(next(dtype for n, _, dtype in self.io if n == name))

    def create_execution_context(self) -> _Context:
        return _Context(self)


class _Context:
    def __init__(self, engine: _Engine) -> None:
        self.engine = engine
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.addresses: dict[str, int] = {}

    def set_input_shape(self, name: str, shape: tuple[int, ...]) -> bool:
        assert self.engine.get_tensor_mode(name) == TensorIOMode.INPUT
        low, _, high = self.engine.record["profile"][name]
        if len(shape) != len(low) or any(not a <= s <= c for a, s, c in zip(low, shape, high)):
            return False
        self.shapes[name] = tuple(int(s) for s in shape)
        return True

    def _outputs_for(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        names = [o.name for o in self.engine.session.get_outputs()]
        return dict(zip(names, self.engine.session.run(None, feeds), strict=True))

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        if self.engine.get_tensor_mode(name) == TensorIOMode.INPUT:
            return self.shapes[name]
        inputs = [n for n, mode, _ in self.engine.io if mode == TensorIOMode.INPUT]
        assert set(self.shapes) == set(inputs), "output shapes asked before every input shape was set"
        zeros = {n: np.zeros(self.shapes[n], dtype=self.engine.get_tensor_dtype(n)) for n in inputs}
        return self._outputs_for(zeros)[name].shape

    def set_tensor_address(self, name: str, address: int) -> bool:
        assert isinstance(address, int)
        self.addresses[name] = address
        return True

    def execute_async_v3(self, stream_handle: int) -> bool:
        cuda = self.engine.fake.cuda
        assert type(stream_handle) is int and stream_handle in cuda.streams, "execute_async_v3 takes a stream's int handle"
        assert set(self.addresses) == {n for n, _, _ in self.engine.io}, "a tensor has no address"
        feeds = {}
        for name, mode, dtype in self.engine.io:
            if mode == TensorIOMode.INPUT:
                nbytes = int(np.prod(self.shapes[name])) * np.dtype(dtype).itemsize
                assert nbytes <= cuda.device_size(self.addresses[name])
                raw = ctypes.string_at(self.addresses[name], nbytes)
                feeds[name] = np.frombuffer(raw, dtype=dtype).reshape(self.shapes[name]).copy()
        for name, value in self._outputs_for(feeds).items():
            if value.dtype.kind == "f" and self.engine.record["fp16"]:
                value = value.astype(np.float16).astype(value.dtype)
            if value.dtype.kind == "f" and self.engine.fake.noise:
                value = value + np.asarray(self.engine.fake.noise, dtype=value.dtype)
            value = np.ascontiguousarray(value)
            assert value.nbytes <= cuda.device_size(self.addresses[name]), f"the buffer of {name} is too small"
            ctypes.memmove(self.addresses[name], value.ctypes.data, value.nbytes)
        return True


class _Runtime:
    def __init__(self, fake: FakeTensorRT, logger: _Logger) -> None:
        self.fake = fake

    def deserialize_cuda_engine(self, plan: bytes) -> _Engine | None:
        return _Engine(self.fake, plan) if plan.startswith(_MAGIC) else None


class FakeTensorRT(types.ModuleType):
    """`tensorrt` for the calls export/tensorrt.py makes; `noise` is added to every float output (a bad plan)."""

    Logger = _Logger
    TensorIOMode = TensorIOMode
    BuilderFlag = BuilderFlag
    Builder = _Builder

    def __init__(self, cuda: FakeCudaRuntime, noise: float = 0.0) -> None:
        super().__init__("tensorrt")
        self.cuda, self.noise = cuda, noise
        self.__version__ = "10.5.0-fake"

    def OnnxParser(self, network: _Network, logger: _Logger) -> _OnnxParser:  # noqa: N802
        return _OnnxParser(network, logger)

    def Runtime(self, logger: _Logger) -> _Runtime:  # noqa: N802
        return _Runtime(self, logger)

    @staticmethod
    def nptype(dtype: np.dtype) -> type:
        return np.dtype(dtype).type


def modules(trt: FakeTensorRT | None, cuda: FakeCudaRuntime | None) -> dict[str, Any]:
    """The sys.modules entries that make `import tensorrt` and `from cuda.bindings import runtime` find the fakes
    (None: make that import fail, as where the package is not installed)."""
    if cuda is None:
        return {"tensorrt": trt, "cuda": None, "cuda.bindings": None, "cuda.bindings.runtime": None}
    package, bindings = types.ModuleType("cuda"), types.ModuleType("cuda.bindings")
    package.__path__, bindings.__path__ = [], []  # packages, so `from cuda.bindings import runtime` resolves
    package.bindings, bindings.runtime = bindings, cuda
    return {"tensorrt": trt, "cuda": package, "cuda.bindings": bindings, "cuda.bindings.runtime": cuda}
