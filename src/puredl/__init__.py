"""puredl: a deep-learning stack in Python.

Pure tier (standard library only): tensors with broadcasting, autograd, nn, optim, training,
data tools and safetensors files. Accelerated tier: the same ops on PyTorch (CPU or CUDA).

>>> import puredl as pd
>>> x = pd.tensor([[1.0, 2.0]], requires_grad=True)
>>> y = (x * x).sum(); y.backward(); x.grad
tensor([[2., 4.]])
"""

# subpackages of the pure tier (standard library only; they import Tensor lazily where needed);
# accelerator, utils, legacy, modes and placement are torch's surface outside the core (issue #13)
# the core first: tensor_methods attaches the op methods to Tensor (tensor.py sits below the ops)
from puredl import tensor_methods as _tensor_methods  # noqa: F401, I001 - installs Tensor's op methods
from puredl import accelerator, data, datasets, linalg, nn, optim, utils  # noqa: E402
from puredl import autograd_function as _autograd_function  # noqa: F401 - installs Function.apply
from puredl import ops as _ops_module
from puredl.autograd import enable_grad, is_grad_enabled, no_grad, set_grad_enabled
from puredl.creation import (
    arange,
    as_tensor,
    empty,
    empty_like,
    eye,
    from_torch,
    full,
    full_like,
    linspace,
    ones,
    ones_like,
    rand,
    rand_like,
    randint,
    randint_like,
    randn,
    randn_like,
    randperm,
    tensor,
    zeros,
    zeros_like,
)
from puredl.dtype_info import finfo, iinfo
from puredl.dtypes import (
    DType,
    bfloat16,
    float16,
    float32,
    float64,
    get_default_dtype,
    int8,
    int16,
    int32,
    int64,
    set_default_dtype,
    uint8,
)
from puredl.dtypes import bool_ as bool  # noqa: A001 - torch's name (puredl.bool)
from puredl.generator import Generator
from puredl.io import load, save
from puredl.legacy import (
    BFloat16Tensor,
    BoolTensor,
    ByteTensor,
    CharTensor,
    DoubleTensor,
    FloatTensor,
    HalfTensor,
    IntTensor,
    LongTensor,
    ShortTensor,
    from_numpy,
)
from puredl.modes import inference_mode, is_inference_mode_enabled
from puredl.ops import BINARY_OPS as _BINARY_OPS
from puredl.ops import UNARY_OPS as _UNARY_OPS
from puredl.ops import (
    argmax,
    argmin,
    cat,
    clamp,
    log_softmax,
    matmul,
    softmax,
    stack,
    std,
    var,
    where,
)
from puredl.ops import reduce_max as max  # noqa: A004
from puredl.ops import reduce_min as min  # noqa: A004
from puredl.linalg import tensor_norm as norm
from puredl.ops_order import argsort, cumprod, cumsum, flip, sort
from puredl.ops_select import masked_fill, mm, multinomial, topk, tril, triu
from puredl.ops_window import conv2d
from puredl.placement import device, get_default_device, set_default_device
from puredl.random import manual_seed
from puredl.tensor import Tensor

# pd.exp, pd.add, pd.sum, ...: every op of ops' tables (abs, pow and sum shadow builtins, as torch's do)
globals().update({_name: getattr(_ops_module, _name) for _name in (*_UNARY_OPS, *_BINARY_OPS)})
globals().update(_ops_module.REDUCE_FUNCTIONS)
sum = _ops_module.REDUCE_FUNCTIONS["sum"]  # noqa: A001 - spelled out for readers and linters
mean = _ops_module.REDUCE_FUNCTIONS["mean"]
from puredl.ops_order import round  # noqa: A004, E402 - with decimals=, over the table's plain round

float = float32  # noqa: A001 - torch's alias
double = float64
half = float16
long = int64
short = int16

__version__ = "0.1.0"


def clamp_min(t, min):  # noqa: A002
    return clamp(t, min=min)


def flatten(t, start_dim: int = 0, end_dim: int = -1):
    return t.flatten(start_dim, end_dim)


def reshape(t, shape):
    return t.reshape(shape)


def transpose(t, dim0: int, dim1: int):
    return t.transpose(dim0, dim1)


def permute(t, dims):
    return t.permute(dims)


def squeeze(t, dim=None):
    return t.squeeze(dim)


def unsqueeze(t, dim: int):
    return t.unsqueeze(dim)


def numel(t) -> int:
    return t.numel()


def is_tensor(x) -> bool:
    return isinstance(x, Tensor)


def __getattr__(name: str):
    # puredl.cuda after a bare `import puredl`, as torch.cuda (imported on first use: it is not free)
    if name == "cuda":
        import importlib

        return importlib.import_module("puredl.cuda")
    if name == "int":  # torch.int is int32; a module global named int would shadow the builtin here
        return int32
    raise AttributeError(f"module 'puredl' has no attribute {name!r}")
