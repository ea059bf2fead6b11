from advlab.metrics.distortion import distortion, image_quality

__all__ = ["distortion", "image_quality"]
