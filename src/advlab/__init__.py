"""advlab: config-driven adversarial attack and defense experiments."""

__version__ = "0.1.0"
