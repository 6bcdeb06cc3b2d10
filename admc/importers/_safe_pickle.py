"""Restricted unpickling of feature files from public releases.

Released feature files (MIntRec's ``*_feats.pkl``, object-dtype ``.npy`` files) are pickles, and
a pickle can run any code while it loads.  Nothing here uses the stock unpickler: a
:class:`RestrictedUnpickler` resolves only the handful of globals needed to rebuild NumPy arrays
and (plain CPU) torch tensors, each through a checking wrapper, and refuses everything else with a
:class:`~admc.data.DatasetError` that names the file and the refused global.

Torch tensors pickled with the stock :mod:`pickle` (what ``pickle.dump`` of a tensor produces) store
their data as ``torch.storage._load_from_bytes(<legacy torch.save bytes>)``; torch's own
``_load_from_bytes`` runs ``torch.load(weights_only=False)`` on those bytes, so it is replaced by a
version that uses ``torch.load(weights_only=True, map_location="cpu")``.  Files in torch's own
format (zip or legacy ``torch.save``) are read with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import io
import pickle
import sys
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np

from admc.data import DatasetError, read_npy_header

# magic number that starts a legacy (non-zip) torch.save file
_TORCH_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


class _Marker:
    """Stands in for a class that may only appear as an argument, never be called."""

    def __init__(self, name: str):
        self.name = name

    def __repr__(self) -> str:
        return f"<type {self.name}>"


_NDARRAY = _Marker("numpy.ndarray")
_TENSOR = _Marker("torch.Tensor")
_PARAMETER = _Marker("torch.nn.Parameter")


class _Refused(Exception):
    pass


def _np_reconstruct(subtype, shape, dtype):
    if subtype is not _NDARRAY and subtype is not np.ndarray:
        raise _Refused(f"numpy _reconstruct of {subtype!r} (only numpy.ndarray is allowed)")
    return np.ndarray.__new__(np.ndarray, shape, dtype)


def _np_scalar(dtype, obj=None):
    try:
        from numpy._core.multiarray import scalar
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import scalar

    if not isinstance(dtype, np.dtype):
        raise _Refused(f"numpy scalar with dtype {dtype!r}")
    return scalar(dtype, obj) if obj is not None else scalar(dtype)


def _codecs_encode(obj, encoding="utf-8", errors="strict"):
    # protocol-2 pickles store bytes as _codecs.encode(str, "latin1")
    if not isinstance(obj, str) or encoding not in ("latin1", "latin-1", "utf-8", "utf8", "ascii"):
        raise _Refused(f"_codecs.encode({type(obj).__name__}, {encoding!r})")
    return obj.encode(encoding, errors)


def _torch():
    import torch

    return torch


def _is_storage(x) -> bool:
    torch = _torch()
    return isinstance(x, (torch.storage.TypedStorage, torch.storage.UntypedStorage))


def _torch_load_from_bytes(b):
    torch = _torch()
    if not isinstance(b, (bytes, bytearray)):
        raise _Refused("torch.storage._load_from_bytes with a non-bytes argument")
    try:
        out = torch.load(io.BytesIO(bytes(b)), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises UnpicklingError/RuntimeError/...
        raise _Refused(f"embedded torch storage refused by torch.load(weights_only=True): {e}") from None
    if not _is_storage(out):
        raise _Refused(f"embedded torch bytes hold {type(out).__name__}, expected a storage")
    return out


def _check_hooks(hooks):
    if hooks is not None and (not isinstance(hooks, dict) or len(hooks)):
        raise _Refused("tensor with backward hooks")


def _check_view(n_elements: int, storage_offset, size, stride) -> tuple[int, tuple, tuple]:
    """A tensor view must lie inside its storage: torch's ``set_`` would otherwise enlarge the
    storage with uninitialised memory (a small file declaring a huge tensor)."""
    try:
        offset, size, stride = int(storage_offset), tuple(int(x) for x in size), tuple(int(x) for x in stride)
    except (TypeError, ValueError):
        raise _Refused("tensor with a non-integer size, stride or offset") from None
    if len(size) != len(stride) or offset < 0 or any(x < 0 for x in size + stride):
        raise _Refused(f"tensor with size {size}, stride {stride}, offset {offset}")
    if all(size):
        last = offset + sum((n - 1) * st for n, st in zip(size, stride))
        if last >= n_elements:
            raise _Refused(f"tensor of size {size} (stride {stride}, offset {offset}) declares more elements than "
                           f"its storage holds ({n_elements})")
    return offset, size, stride


def _rebuild_tensor(storage, storage_offset, size, stride):
    if not _is_storage(storage):
        raise _Refused(f"tensor rebuilt from {type(storage).__name__}, expected a torch storage")
    torch = _torch()
    if isinstance(storage, torch.storage.UntypedStorage):
        raise _Refused("tensor rebuilt from an untyped storage without dtype")
    offset, size, stride = _check_view(storage._size(), storage_offset, size, stride)
    return torch._utils._rebuild_tensor(storage, offset, size, stride)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None,
                       metadata=None):
    _check_hooks(backward_hooks)
    return _rebuild_tensor(storage, storage_offset, size, stride)


def _rebuild_tensor_v3(storage, storage_offset, size, stride, requires_grad, backward_hooks, dtype,
                       metadata=None):
    torch = _torch()
    _check_hooks(backward_hooks)
    if not _is_storage(storage) or not isinstance(dtype, torch.dtype):
        raise _Refused("malformed _rebuild_tensor_v3 arguments")
    untyped = storage._untyped_storage if isinstance(storage, torch.storage.TypedStorage) else storage
    t = torch.empty((0,), dtype=dtype, device="cpu")
    offset, size, stride = _check_view(untyped.nbytes() // t.element_size(), storage_offset, size, stride)
    return t.set_(untyped, offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, *rest):
    _check_hooks(backward_hooks)
    if not isinstance(data, _torch().Tensor):
        raise _Refused("parameter rebuilt from a non-tensor")
    return data


_REBUILDERS = (_rebuild_tensor, _rebuild_tensor_v2, _rebuild_tensor_v3, _rebuild_parameter)


def _rebuild_from_type_v2(func, new_type, args, state):
    if func not in _REBUILDERS or new_type not in (_TENSOR, _PARAMETER):
        raise _Refused(f"_rebuild_from_type_v2({func!r}, {new_type!r}) (only plain tensors are allowed)")
    if state:
        raise _Refused("tensor subclass state")
    return func(*args)


def _rebuild_from_type(func, new_type, args, state):
    return _rebuild_from_type_v2(func, new_type, args, state)


def _torch_dtype(name):
    torch = _torch()
    dt = getattr(torch, name, None)
    if not isinstance(dt, torch.dtype):
        raise _Refused(f"torch.{name}")
    return dt


_NUMPY_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _np_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _np_reconstruct,
    ("numpy.core.multiarray", "scalar"): _np_scalar,
    ("numpy._core.multiarray", "scalar"): _np_scalar,
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _codecs_encode,
}

_TORCH_GLOBALS = {
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_tensor_v3"): _rebuild_tensor_v3,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type_v2,
    ("torch._tensor", "_rebuild_from_type"): _rebuild_from_type,
    ("torch.tensor", "_rebuild_from_type"): _rebuild_from_type,  # torch < 1.9 module name
    ("torch.storage", "_load_from_bytes"): _torch_load_from_bytes,
    ("torch", "Tensor"): _TENSOR,
    ("torch._tensor", "Tensor"): _TENSOR,
    ("torch.nn.parameter", "Parameter"): _PARAMETER,
    ("collections", "OrderedDict"): OrderedDict,
}

_TORCH_DTYPE_NAMES = frozenset({
    "float16", "float32", "float64", "bfloat16", "half", "float", "double",
    "uint8", "int8", "int16", "int32", "int64", "bool",
})


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that rebuilds only NumPy arrays (and, with ``allow_torch``, plain CPU tensors)."""

    def __init__(self, file, *, where: str, allow_torch: bool = False, **kw):
        super().__init__(file, **kw)
        self.where = where
        self.allow_torch = allow_torch

    def find_class(self, module, name):
        key = (module, name)
        if key in _NUMPY_GLOBALS:
            return _NUMPY_GLOBALS[key]
        if self.allow_torch:
            if key in _TORCH_GLOBALS:
                return _TORCH_GLOBALS[key]
            if module == "torch" and name in _TORCH_DTYPE_NAMES:  # argument of _rebuild_tensor_v3
                return _torch_dtype(name)
        raise DatasetError(
            f"{self.where}: refused to unpickle global '{module}.{name}' (only NumPy arrays"
            f"{' and torch tensors' if self.allow_torch else ''} are allowed in feature files)"
        )

    def persistent_load(self, pid):
        raise DatasetError(f"{self.where}: refused persistent id in pickle (not a plain feature pickle)")


def restricted_load(file, *, where: str, allow_torch: bool = False, encoding: str = "ASCII"):
    """Unpickle one object from the binary file object ``file`` with :class:`RestrictedUnpickler`;
    every failure is a DatasetError naming ``where``."""
    try:
        return RestrictedUnpickler(file, where=where, allow_torch=allow_torch, encoding=encoding).load()
    except DatasetError:
        raise
    except _Refused as e:
        raise DatasetError(f"{where}: refused to unpickle: {e}") from None
    except Exception as e:  # noqa: BLE001 - corrupt pickles raise many exception types
        raise DatasetError(f"{where}: not a readable pickle ({type(e).__name__}: {e})") from None


MIN_PRODUCED_BYTES = 64 * 2**20
PRODUCED_PER_FILE_BYTE = 2  # pickles and torch files store their array data as raw bytes: ~1x


def produced_limit(path: Path) -> int:
    """How many bytes unpickling ``path`` may produce: a small floor or twice the file's size."""
    return max(MIN_PRODUCED_BYTES, PRODUCED_PER_FILE_BYTE * path.stat().st_size)


def _children(x):
    if isinstance(x, dict):
        return [*x.keys(), *x.values()]
    if isinstance(x, (list, tuple, set, frozenset)):
        return x
    if isinstance(x, np.ndarray) and x.dtype.hasobject:
        return x.ravel().tolist()
    return None


def _leaf_bytes(x) -> int:
    if isinstance(x, np.ndarray):
        return int(x.nbytes)
    if isinstance(x, (bytes, bytearray, str)):
        return len(x)
    torch = sys.modules.get("torch")
    if torch is not None:
        if isinstance(x, torch.Tensor):
            return x.numel() * x.element_size()
        if isinstance(x, (torch.storage.TypedStorage, torch.storage.UntypedStorage)):
            return int(x.nbytes())
    return 0


_END = object()


def check_produced_size(obj, limit: int, where: str) -> int:
    """Bytes of everything ``obj`` holds, each repeated reference counted again (what a consumer that
    converts every value makes of it: an array referenced two million times by the pickle's memo is
    two million arrays), plus 8 bytes per reference.  Raises :class:`DatasetError` past ``limit`` or
    on a reference cycle; returns the total."""
    memo: dict[int, int] = {}
    active: set[int] = set()
    frames: list[list] = []  # [container, iterator over children, bytes so far]
    total = 0

    def visit(x) -> int | None:
        ch = _children(x)
        if ch is None:
            return 8 + _leaf_bytes(x)
        if id(x) in memo:
            return memo[id(x)]
        if id(x) in active:
            raise DatasetError(f"{where}: holds a reference cycle (a container inside itself); refused")
        active.add(id(x))
        frames.append([x, iter(ch), 8 + (x.nbytes if isinstance(x, np.ndarray) else 0)])
        return None

    def add(n: int) -> None:
        nonlocal total
        if frames:
            frames[-1][2] += n
            if frames[-1][2] > limit:
                over()
        else:
            total += n

    def over():
        raise DatasetError(f"{where}: holds more than {limit / 2**20:.0f} MiB counting repeated references "
                           f"(the limit for a file of this size); refused")

    first = visit(obj)
    if first is not None:
        add(first)
    while frames:
        frame = frames[-1]
        child = next(frame[1], _END)
        if child is _END:
            frames.pop()
            active.discard(id(frame[0]))
            memo[id(frame[0])] = frame[2]
            add(frame[2])
            continue
        n = visit(child)
        if n is not None:
            add(n)
    if total > limit:
        over()
    return total



def _torch_load_weights_only(path: Path):
    torch = _torch()
    safe = [np.ndarray, np.dtype]
    for mod in ("numpy._core.multiarray", "numpy.core.multiarray"):
        try:
            m = __import__(mod, fromlist=["_reconstruct"])
            safe.append(m._reconstruct)
        except Exception:  # noqa: BLE001
            pass
    safe += [type(np.dtype(t)) for t in (np.float32, np.float64, np.float16, np.int64, np.int32)]
    try:
        with torch.serialization.safe_globals(safe):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001
        raise DatasetError(f"{path}: refused or unreadable by torch.load(weights_only=True) ({e})") from None


def load_feature_pickle(path: str | Path):
    """Load a feature file that is a plain pickle or a torch.save file, without running code.

    Returns the unpickled object with NumPy arrays and/or CPU torch tensors inside.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: missing")
    if zipfile.is_zipfile(path):
        obj = _torch_load_weights_only(path)
    else:
        with open(path, "rb") as f:
            obj = restricted_load(f, where=str(path), allow_torch=True, encoding="latin1")
        if isinstance(obj, int) and obj == _TORCH_LEGACY_MAGIC:  # a legacy torch.save file
            obj = _torch_load_weights_only(path)
    check_produced_size(obj, produced_limit(path), str(path))
    return obj


def load_npy_restricted(path: str | Path) -> np.ndarray:
    """``np.load`` of an ``.npy`` file; object arrays are unpickled with :class:`RestrictedUnpickler`
    (NumPy only) and must hold only strings/bytes."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: missing")
    with open(path, "rb") as f:
        shape, _fortran, dtype, nbytes = read_npy_header(f, str(path), allow_object=True)
        header = f.tell()
        if not dtype.hasobject:
            size = path.stat().st_size
            if header + nbytes != size:
                raise DatasetError(f"{path}: .npy header declares shape {shape} {dtype} = {nbytes} bytes, but the "
                                   f"file holds {max(size - header, 0)} bytes of data; refused")
            f.seek(0)
            try:
                return np.load(f, allow_pickle=False)
            except Exception as e:  # noqa: BLE001
                raise DatasetError(f"{path}: not a readable .npy file ({type(e).__name__}: {e})") from None
        # object array: unpickle the payload with the restricted unpickler (NumPy only)
        arr = restricted_load(f, where=str(path), allow_torch=False, encoding="ASCII")
    check_produced_size(arr, produced_limit(path), str(path))
    if not isinstance(arr, np.ndarray):
        raise DatasetError(f"{path}: pickled payload is {type(arr).__name__}, expected an array")
    def walk(x):
        if isinstance(x, np.ndarray):
            if x.dtype.hasobject:
                for y in x.ravel():
                    walk(y)
            elif x.dtype.kind not in "SU":
                raise DatasetError(f"{path}: object array holds a {x.dtype} array, expected strings")
        elif isinstance(x, (list, tuple)):
            for y in x:
                walk(y)
        elif not isinstance(x, (str, bytes, np.str_, np.bytes_)):
            raise DatasetError(f"{path}: object array holds {type(x).__name__}, expected strings/bytes")

    for item in arr.ravel():
        walk(item)
    if arr.shape != tuple(shape):
        raise DatasetError(f"{path}: header shape {shape} differs from payload shape {arr.shape}")
    return arr
