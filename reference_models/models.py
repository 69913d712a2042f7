"""The reference models, as the seeds write them."""
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn import Conv2d, Flatten, Linear, MaxPool2d, Sequential


class LeNet(nn.Module):
    """The seeds' LeNet (1x32x32 input, 10 classes)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), (2, 2))
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


class CifarNet(nn.Module):
    """The seeds' CIFAR-10 network built with Sequential (3x32x32 input)."""

    def __init__(self):
        super().__init__()
        self.model1 = Sequential(
            Conv2d(3, 32, 5, padding=2), MaxPool2d(2),
            Conv2d(32, 32, 5, padding=2), MaxPool2d(2),
            Conv2d(32, 64, 5, padding=2), MaxPool2d(2),
            Flatten(), Linear(1024, 64), Linear(64, 10),
        )

    def forward(self, x):
        return self.model1(x)


class MnistMLP(nn.Module):
    """The seeds' MNIST multi-layer perceptron (1x28x28 input)."""

    def __init__(self):
        super().__init__()
        self.l1 = nn.Linear(784, 512)
        self.l2 = nn.Linear(512, 256)
        self.l3 = nn.Linear(256, 128)
        self.l4 = nn.Linear(128, 64)
        self.l5 = nn.Linear(64, 10)

    def forward(self, x):
        x = x.view(-1, 784)
        x = F.relu(self.l1(x))
        x = F.relu(self.l2(x))
        x = F.relu(self.l3(x))
        x = F.relu(self.l4(x))
        return self.l5(x)


class BNDropoutMLP(nn.Module):
    """An MLP with BatchNorm and Dropout: the layers whose behaviour depends on train()/eval()."""

    def __init__(self, features=20, hidden=64, classes=4, p=0.3):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(features, hidden), nn.BatchNorm1d(hidden), nn.ReLU(), nn.Dropout(p))
        self.head = nn.Linear(hidden, classes)

    def forward(self, x):
        return self.head(self.body(x))


def resnet18(num_classes=10):
    """torchvision's ResNet-18, randomly initialised (weights=None: no download)."""
    import torchvision

    return torchvision.models.resnet18(weights=None, num_classes=num_classes)


# name -> (constructor, input shape of one sample, classes)
MODELS = {
    "lenet": (LeNet, (1, 32, 32), 10),
    "cifarnet": (CifarNet, (3, 32, 32), 10),
    "mnist_mlp": (MnistMLP, (1, 28, 28), 10),
    "resnet18": (resnet18, (3, 32, 32), 10),
    "bn_dropout_mlp": (BNDropoutMLP, (20,), 4),
}
