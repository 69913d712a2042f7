"""Real small models the runtime tests train: the seeds' LeNet, CIFAR-10 Sequential net and MNIST
MLP, torchvision's ResNet-18 (weights=None: nothing is downloaded) and a BatchNorm+Dropout MLP,
with a correct training loop and small synthetic data that the models can actually learn."""
from reference_models.models import MODELS, BNDropoutMLP, CifarNet, LeNet, MnistMLP, resnet18
from reference_models.training import evaluate, make_loaders, train

__all__ = ["MODELS", "BNDropoutMLP", "CifarNet", "LeNet", "MnistMLP", "evaluate", "make_loaders", "resnet18", "train"]
