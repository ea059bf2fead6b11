"""Image generators (attribute-conditional editors) used by generative attacks."""
