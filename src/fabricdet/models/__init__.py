"""Detectors: backbones, neck, dense head, SinkhornNMS post-processing and set loss."""

from fabricdet.models.config import ModelConfig, SinkhornNMSConfig

__all__ = ["ModelConfig", "SinkhornNMSConfig"]
