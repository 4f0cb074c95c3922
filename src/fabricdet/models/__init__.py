"""Detectors: backbones, neck, dense head, SinkhornNMS post-processing and set loss."""

from fabricdet.models.config import ModelConfig, SinkhornNMSConfig
from fabricdet.models.detector import FabricDetector, build_model

__all__ = ["FabricDetector", "ModelConfig", "SinkhornNMSConfig", "build_model"]
