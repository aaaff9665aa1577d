"""Analytics on top of detections: brand matching and exposure measurement."""

from vidinfer.analytics.brands import Brand, BrandMatcher, normalise_text
from vidinfer.analytics.exposure import BrandExposure, ExposureAnalytics

__all__ = ["Brand", "BrandMatcher", "normalise_text", "BrandExposure", "ExposureAnalytics"]
