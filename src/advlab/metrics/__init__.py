from advlab.metrics.distortion import distortion

__all__ = ["distortion"]
