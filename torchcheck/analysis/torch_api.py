"""What torchcheck knows about the torch API, by qualified name. Plain data: no torch import."""
from __future__ import annotations

import re

# Loss class -> its constructor parameters in order (to find deprecated flags given by position).
LOSS_CLASSES: dict[str, tuple[str, ...]] = {
    "BCELoss": ("weight", "size_average", "reduce", "reduction"),
    "BCEWithLogitsLoss": ("weight", "size_average", "reduce", "reduction", "pos_weight"),
    "CTCLoss": ("blank", "reduction", "zero_infinity"),
    "CosineEmbeddingLoss": ("margin", "size_average", "reduce", "reduction"),
    "CrossEntropyLoss": ("weight", "size_average", "ignore_index", "reduce", "reduction", "label_smoothing"),
    "GaussianNLLLoss": ("full", "eps", "reduction"),
    "HingeEmbeddingLoss": ("margin", "size_average", "reduce", "reduction"),
    "HuberLoss": ("reduction", "delta"),
    "KLDivLoss": ("size_average", "reduce", "reduction", "log_target"),
    "L1Loss": ("size_average", "reduce", "reduction"),
    "MSELoss": ("size_average", "reduce", "reduction"),
    "MarginRankingLoss": ("margin", "size_average", "reduce", "reduction"),
    "MultiLabelMarginLoss": ("size_average", "reduce", "reduction"),
    "MultiLabelSoftMarginLoss": ("weight", "size_average", "reduce", "reduction"),
    "MultiMarginLoss": ("p", "margin", "weight", "size_average", "reduce", "reduction"),
    "NLLLoss": ("weight", "size_average", "ignore_index", "reduce", "reduction"),
    "NLLLoss2d": ("weight", "size_average", "ignore_index", "reduce", "reduction"),
    "PoissonNLLLoss": ("log_input", "full", "size_average", "eps", "reduce", "reduction"),
    "SmoothL1Loss": ("size_average", "reduce", "reduction", "beta"),
    "SoftMarginLoss": ("size_average", "reduce", "reduction"),
    "TripletMarginLoss": ("margin", "p", "eps", "swap", "size_average", "reduce", "reduction"),
    "TripletMarginWithDistanceLoss": ("distance_function", "margin", "swap", "reduction"),
}

# Functional loss -> (the loss class it computes, its parameters in order).
FUNCTIONAL_LOSSES: dict[str, tuple[str, tuple[str, ...]]] = {
    "binary_cross_entropy": ("BCELoss", ("input", "target", "weight", "size_average", "reduce", "reduction")),
    "binary_cross_entropy_with_logits": (
        "BCEWithLogitsLoss",
        ("input", "target", "weight", "size_average", "reduce", "reduction", "pos_weight"),
    ),
    "cosine_embedding_loss": (
        "CosineEmbeddingLoss",
        ("input1", "input2", "target", "margin", "size_average", "reduce", "reduction"),
    ),
    "cross_entropy": (
        "CrossEntropyLoss",
        ("input", "target", "weight", "size_average", "ignore_index", "reduce", "reduction", "label_smoothing"),
    ),
    "ctc_loss": ("CTCLoss", ("log_probs", "targets", "input_lengths", "target_lengths", "blank", "reduction")),
    "gaussian_nll_loss": ("GaussianNLLLoss", ("input", "target", "var", "full", "eps", "reduction")),
    "hinge_embedding_loss": (
        "HingeEmbeddingLoss",
        ("input", "target", "margin", "size_average", "reduce", "reduction"),
    ),
    "huber_loss": ("HuberLoss", ("input", "target", "reduction", "delta")),
    "kl_div": ("KLDivLoss", ("input", "target", "size_average", "reduce", "reduction", "log_target")),
    "l1_loss": ("L1Loss", ("input", "target", "size_average", "reduce", "reduction")),
    "margin_ranking_loss": (
        "MarginRankingLoss",
        ("input1", "input2", "target", "margin", "size_average", "reduce", "reduction"),
    ),
    "mse_loss": ("MSELoss", ("input", "target", "size_average", "reduce", "reduction")),
    "multi_margin_loss": (
        "MultiMarginLoss",
        ("input", "target", "p", "margin", "weight", "size_average", "reduce", "reduction"),
    ),
    "multilabel_margin_loss": ("MultiLabelMarginLoss", ("input", "target", "size_average", "reduce", "reduction")),
    "multilabel_soft_margin_loss": (
        "MultiLabelSoftMarginLoss",
        ("input", "target", "weight", "size_average", "reduce", "reduction"),
    ),
    "nll_loss": ("NLLLoss", ("input", "target", "weight", "size_average", "ignore_index", "reduce", "reduction")),
    "poisson_nll_loss": (
        "PoissonNLLLoss",
        ("input", "target", "log_input", "full", "size_average", "eps", "reduce", "reduction"),
    ),
    "smooth_l1_loss": ("SmoothL1Loss", ("input", "target", "size_average", "reduce", "reduction", "beta")),
    "soft_margin_loss": ("SoftMarginLoss", ("input", "target", "size_average", "reduce", "reduction")),
    "triplet_margin_loss": (
        "TripletMarginLoss",
        ("anchor", "positive", "negative", "margin", "p", "eps", "swap", "size_average", "reduce", "reduction"),
    ),
}

# Losses whose second argument is a target that should not carry a graph.
TARGET_LOSSES = {
    "BCELoss", "BCEWithLogitsLoss", "CrossEntropyLoss", "HuberLoss", "KLDivLoss", "L1Loss", "MSELoss",
    "NLLLoss", "NLLLoss2d", "SmoothL1Loss", "SoftMarginLoss", "MultiLabelSoftMarginLoss", "PoissonNLLLoss",
    "GaussianNLLLoss",
}

SOFTMAX_FUNCTIONS = {"torch.softmax", "torch.nn.functional.softmax", "torch.special.softmax"}
LOG_SOFTMAX_FUNCTIONS = {"torch.log_softmax", "torch.nn.functional.log_softmax", "torch.special.log_softmax"}
SIGMOID_FUNCTIONS = {"torch.sigmoid", "torch.nn.functional.sigmoid", "torch.special.expit"}

# nn layers by the activation their output carries.
LAYER_ACTIVATION = {
    "torch.nn.Softmax": "softmax",
    "torch.nn.Softmax2d": "softmax",
    "torch.nn.LogSoftmax": "log_softmax",
    "torch.nn.Sigmoid": "sigmoid",
    "torch.nn.Linear": "logits",
    "torch.nn.LazyLinear": "logits",
    "torch.nn.Bilinear": "logits",
}
# Layers that pass their input's activation through unchanged (shape or regularisation only).
TRANSPARENT_LAYERS = {
    "torch.nn.Dropout", "torch.nn.Dropout1d", "torch.nn.Dropout2d", "torch.nn.Dropout3d",
    "torch.nn.AlphaDropout", "torch.nn.Flatten", "torch.nn.Unflatten", "torch.nn.Identity",
}

# Layers whose behaviour differs between train() and eval(), by what train() changes in them.
MODE_EFFECTS = {
    **dict.fromkeys(("torch.nn.Dropout", "torch.nn.Dropout1d", "torch.nn.Dropout2d", "torch.nn.Dropout3d",
                     "torch.nn.AlphaDropout", "torch.nn.FeatureAlphaDropout"), "dropout"),
    **dict.fromkeys(("torch.nn.BatchNorm1d", "torch.nn.BatchNorm2d", "torch.nn.BatchNorm3d", "torch.nn.SyncBatchNorm",
                     "torch.nn.LazyBatchNorm1d", "torch.nn.LazyBatchNorm2d", "torch.nn.LazyBatchNorm3d"), "batchnorm"),
    **dict.fromkeys(("torch.nn.InstanceNorm1d", "torch.nn.InstanceNorm2d", "torch.nn.InstanceNorm3d"), "instancenorm"),
    # their dropout= argument
    **dict.fromkeys(("torch.nn.RNN", "torch.nn.LSTM", "torch.nn.GRU", "torch.nn.Transformer",
                     "torch.nn.TransformerEncoder", "torch.nn.TransformerDecoder", "torch.nn.TransformerEncoderLayer",
                     "torch.nn.TransformerDecoderLayer", "torch.nn.MultiheadAttention"), "dropout"),
}
MODE_DEPENDENT_LAYERS = set(MODE_EFFECTS)

FUNCTIONAL_DROPOUT = {
    "torch.nn.functional.dropout": 2,
    "torch.nn.functional.dropout1d": 2,
    "torch.nn.functional.dropout2d": 2,
    "torch.nn.functional.dropout3d": 2,
    "torch.nn.functional.alpha_dropout": 2,
    "torch.nn.functional.feature_alpha_dropout": 2,
}  # name -> position of `training`

NO_GRAD_CONTEXTS = {"torch.no_grad", "torch.inference_mode", "torch.autograd.no_grad", "torch.autograd.inference_mode"}
ENABLE_GRAD_CONTEXTS = {"torch.enable_grad", "torch.autograd.enable_grad"}
SET_GRAD_ENABLED = {"torch.set_grad_enabled", "torch.autograd.set_grad_enabled"}

# Tensor constructors: (position of the data/size arguments starts at 0).
TENSOR_FACTORIES = {
    "torch.tensor", "torch.as_tensor", "torch.randn", "torch.rand", "torch.zeros", "torch.ones", "torch.empty",
    "torch.full", "torch.arange", "torch.linspace", "torch.randint", "torch.randperm", "torch.from_numpy",
    "torch.Tensor", "torch.FloatTensor", "torch.DoubleTensor", "torch.HalfTensor", "torch.LongTensor",
    "torch.IntTensor", "torch.ShortTensor", "torch.ByteTensor", "torch.BoolTensor", "torch.CharTensor",
}
# Deep-learning frameworks other than PyTorch: a module importing one of them and nothing of
# PyTorch's is written for it (d2l ships `torch.py`, `jax.py`, `mxnet.py` and `tensorflow.py`, where
# `nn.Module` is flax's and `net(X)` a Gluon block).
OTHER_FRAMEWORKS = frozenset({"tensorflow", "keras", "tf_keras", "jax", "flax", "haiku", "optax", "equinox", "mxnet",
                              "paddle", "oneflow", "mindspore", "chainer", "theano", "cntk", "mlx", "tinygrad"})
# Packages whose objects are never torch modules or tensors: numpy, the other frameworks, and
# inference runtimes (OpenCV's `cv2.dnn` nets and Caffe's have a `forward()` too).
OTHER_RUNTIMES = OTHER_FRAMEWORKS | {"numpy", "cv2", "caffe", "onnxruntime", "openvino", "tensorrt", "ncnn",
                                     "coremltools", "tflite_runtime"}
# Tensor methods that make a fresh tensor with the receiver's dtype and device.
NEW_TENSOR_METHODS = frozenset({"new_ones", "new_zeros", "new_full", "new_empty", "new_tensor"})
# Tensors made in the shape (and dtype) of another one: fresh leaves, like the other factories.
LIKE_FACTORIES = {f"torch.{name}_like" for name in ("zeros", "ones", "empty", "full", "rand", "randn", "randint")}
LEGACY_TENSOR_DTYPES = {
    "torch.Tensor": "float32", "torch.FloatTensor": "float32", "torch.DoubleTensor": "float64",
    "torch.HalfTensor": "float16", "torch.LongTensor": "int64", "torch.IntTensor": "int32",
    "torch.ShortTensor": "int16", "torch.ByteTensor": "uint8", "torch.BoolTensor": "bool",
    "torch.CharTensor": "int8",
}
DTYPE_NAMES = {
    "float": "float32", "float32": "float32", "float64": "float64", "double": "float64", "half": "float16",
    "float16": "float16", "bfloat16": "bfloat16", "long": "int64", "int64": "int64", "int": "int32",
    "int32": "int32", "int16": "int16", "short": "int16", "int8": "int8", "uint8": "uint8", "bool": "bool",
}
# Tensor methods that convert dtype.
DTYPE_METHODS = {
    "float": "float32", "double": "float64", "half": "float16", "bfloat16": "bfloat16", "long": "int64",
    "int": "int32", "short": "int16", "char": "int8", "byte": "uint8", "bool": "bool",
}
# Tensor methods whose result keeps the input's activation, graph and dtype.
PRESERVING_METHODS = {
    "view", "reshape", "squeeze", "unsqueeze", "contiguous", "clone", "cuda", "cpu", "to", "flatten",
    "permute", "transpose", "t", "view_as", "reshape_as", "expand", "expand_as", "type_as", "float", "double",
    "half", "bfloat16", "resize", "movedim", "swapaxes", "swapdims", "unflatten", "squeeze_", "unsqueeze_",
    "clamp", "clamp_", "clip", "clip_",
}
# torch functions that reshape their first argument and keep what it holds.
PRESERVING_FUNCTIONS = {f"torch.{name}" for name in (
    "flatten", "reshape", "squeeze", "unsqueeze", "transpose", "permute", "movedim", "swapaxes", "swapdims",
    "unflatten", "t", "clamp", "clip",
)}

# Functions returning an image tensor shaped (C, H, W).
IMAGE_LOADERS = {
    "torchvision.transforms.functional.to_tensor", "torchvision.transforms.functional.pil_to_tensor",
    "torchvision.io.read_image", "torchvision.io.decode_image", "torchvision.io.image.read_image",
    "torchvision.io.image.decode_image", "torchvision.transforms.v2.functional.to_image",
    "torchvision.transforms.v2.functional.pil_to_tensor",
}
IMAGE_TRANSFORM_CLASSES = {
    "torchvision.transforms.ToTensor", "torchvision.transforms.PILToTensor", "torchvision.transforms.v2.ToImage",
    "torchvision.transforms.v2.PILToTensor",
}

# Wrappers whose forward runs the wrapped model's: `DataParallel(model)(x)` returns what `model(x)` does.
MODEL_WRAPPERS = {
    "torch.nn.DataParallel", "torch.nn.parallel.DataParallel", "torch.nn.parallel.DistributedDataParallel",
    "torch.compile",
}

# Class decorators that make a class a record of its annotated fields.
RECORD_DECORATORS = {"dataclasses.dataclass", "attr.dataclass", "attrs.define", "attrs.frozen"}
# Attribute bags built from keyword arguments.
# The last part of a qualname looked up by a name not known statically: `getattr(models, arch)`.
CHOSEN_BY_NAME = "<chosen by name>"

NAMESPACES = {"types.SimpleNamespace", "argparse.Namespace"}

# Modules that only hold others: their value lists what they hold.
MODULE_CONTAINERS = {"torch.nn.Sequential", "torch.nn.ModuleList", "torch.nn.ModuleDict"}

# Methods only an nn.Module has: calling one tells what an object of unknown class is.
MODULE_ONLY_METHODS = {
    "parameters", "named_parameters", "modules", "named_modules", "children", "named_children",
    "register_forward_hook", "register_forward_pre_hook", "load_state_dict",
}
NOT_A_MODULE_NAME = re.compile(r"optim|sched|scaler|opt$|^opt|ema|state|ckpt|checkpoint", re.IGNORECASE)

LIGHTNING_MODULES = {
    "lightning.pytorch.LightningModule", "lightning.LightningModule", "pytorch_lightning.LightningModule",
    "pytorch_lightning.core.LightningModule", "pytorch_lightning.core.module.LightningModule",
}
# LightningModule hooks that Lightning runs in eval mode under no_grad.
LIGHTNING_EVAL_HOOKS = {"validation_step", "test_step", "predict_step"}
MODULE_BASES = {
    "torch.nn.Module", "torch.nn.Sequential", "torch.nn.ModuleList", "torch.nn.ModuleDict",
    "torch.nn.modules.module.Module", *LIGHTNING_MODULES,
}


def loss_class(qualname: str | None) -> str | None:
    """'CrossEntropyLoss' for torch.nn.CrossEntropyLoss, else None."""
    if qualname and qualname.startswith("torch.nn.") and qualname.count(".") == 2:
        name = qualname.rsplit(".", 1)[1]
        if name in LOSS_CLASSES:
            return name
    return None


def functional_loss(qualname: str | None) -> str | None:
    """'cross_entropy' for torch.nn.functional.cross_entropy, else None."""
    if qualname and qualname.startswith("torch.nn.functional."):
        name = qualname.rsplit(".", 1)[1]
        if name in FUNCTIONAL_LOSSES:
            return name
    return None


def is_optimizer_class(qualname: str | None) -> bool:
    if not qualname or not qualname.startswith("torch.optim."):
        return False
    name = qualname.rsplit(".", 1)[1]
    return qualname.count(".") == 2 and name[:1].isupper() and name != "Optimizer"


# The attribute that holds a torchvision classifier's last layers: a model whose head is replaced
# returns what the new head returns.
TORCHVISION_HEADS = {"fc", "classifier", "head", "heads"}


def is_torchvision_builder(qualname: str | None) -> bool:
    if not qualname or not qualname.startswith("torchvision.models."):
        return False  # asked of every call: the table is imported only for torchvision's
    from torchcheck.analysis.torchvision_weights import weights_enum

    return weights_enum(qualname) is not None

_PARAMETER_FREE = (
    "ReLU", "ReLU6", "LeakyReLU", "ELU", "SELU", "CELU", "GELU", "SiLU", "Mish", "Sigmoid", "Tanh", "Softmax",
    "Softmax2d", "LogSoftmax", "Softmin", "Softplus", "Softsign", "Hardtanh", "Hardsigmoid", "Hardswish",
    "LogSigmoid", "Tanhshrink", "Threshold", "GLU", "MaxPool", "AvgPool", "AdaptiveMaxPool", "AdaptiveAvgPool",
    "LPPool", "FractionalMaxPool", "Dropout", "AlphaDropout", "FeatureAlphaDropout", "Flatten", "Unflatten",
    "Identity", "Upsample", "PixelShuffle", "PixelUnshuffle", "ZeroPad", "ConstantPad", "ReflectionPad",
    "ReplicationPad", "ChannelShuffle",
)


def has_parameters(qualname: str | None) -> bool:
    """Does this nn layer hold weights (so its output carries a graph whenever grad is on)?"""
    if not qualname or not qualname.startswith("torch.nn."):
        return False
    name = qualname.rsplit(".", 1)[1]
    return not name.startswith(_PARAMETER_FREE)


# Tensor methods (and torch functions) returning (values, int64 indices).
VALUES_AND_INDICES = {"topk", "sort", "max", "min", "kthvalue", "mode", "median", "cummax", "cummin"}
INDEX_RESULTS = {"argmax", "argmin", "argsort", "nonzero", "searchsorted", "bucketize"}
# Tensor methods that describe the tensor (a size, a count, a flag), not tensors: `x.size(0)`.
SHAPE_METHODS = {"size", "dim", "ndimension", "numel", "nelement", "element_size", "stride", "storage_offset",
                 "get_device", "data_ptr", "is_contiguous", "is_floating_point"}
# Tensor methods whose result has the input's dtype (values picked or rearranged, not computed).
DTYPE_KEEPING = {"index_select", "gather", "masked_select", "narrow", "repeat", "roll", "flip", "detach",
                 "fmod", "remainder", "abs", "neg", "clamp", "masked_fill", "unique", "take", "select"}


def is_float_dtype(dtype: str | None) -> bool:
    return dtype is not None and dtype.startswith(("float", "bfloat"))


def result_dtype(left, right, operator: str) -> str | None:
    """The dtype of `left <op> right` where at least one is a tensor, when it is certain: true
    division gives a float, a float tensor stays float, int tensors combine to int64."""
    dtypes = [v.dtype for v in (left, right) if v.is_tensor]
    floats = [d for d in dtypes if is_float_dtype(d)]
    if operator == "/":
        return floats[0] if floats else "float32"
    if floats:
        return floats[0]
    if len(dtypes) == 2 and all(dtypes):
        return "int64" if "int64" in dtypes else dtypes[0]
    return None  # an int tensor and a Python scalar that may be a float
