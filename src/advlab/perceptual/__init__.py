from advlab.perceptual.lpips_distance import CalibratedLPIPS, LPIPSConfig, LPIPSDistance, normalize_flatten

__all__ = ["CalibratedLPIPS", "LPIPSConfig", "LPIPSDistance", "normalize_flatten"]
