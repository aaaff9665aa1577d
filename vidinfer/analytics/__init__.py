"""Brand impact, a plug-in of stages: brand matching and exposure measurement.

`BrandExposure` (``[[stages]] type = "brand_exposure"``) turns a logo detector's layer and a text
reader's layer into a ``"brand"`` layer, tracks it, measures every brand's exposure per stream,
publishes live ``brand_exposure`` messages and writes the end-of-run report. Nothing outside this
package knows about brands.
"""

from vidinfer.analytics.brand_stage import SOURCE_LABELS, BrandExposure, BrandSpec
from vidinfer.analytics.brands import Brand, BrandMatcher, TextMatches, normalise_text
from vidinfer.analytics.exposure import ExposureAnalytics, StreamExposure

__all__ = ["Brand", "BrandMatcher", "TextMatches", "normalise_text", "BrandExposure", "BrandSpec", "ExposureAnalytics",
           "StreamExposure", "SOURCE_LABELS"]
