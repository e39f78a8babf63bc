"""The model contract: ``features(x)`` then ``head(f)``; inputs are [0, 1] pixels.

Normalisation lives inside the model so every attack works in pixel space, and the classifier
head is a separate module so a method can swap it (RoBal's cosine head).
"""
from __future__ import annotations

import torch
from torch import nn


class Normalize(nn.Module):
    """(x − mean) / std per channel, as a module so it travels with the model."""

    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x):
        return (x - self.mean) / self.std


class LTModel(nn.Module):
    """A classifier split into a feature extractor and a head: ``forward = head(features(x))``."""

    def __init__(self, body: nn.Module, feature_dim: int, num_classes: int, mean, std):
        super().__init__()
        self.normalize = Normalize(mean, std)
        self.body = body
        self.feature_dim = feature_dim
        self.num_classes = num_classes
        self.head: nn.Module = nn.Linear(feature_dim, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(self.normalize(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))
