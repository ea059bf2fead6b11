"""Metrics: distortion and image quality (:mod:`.distortion`), corruption errors (:mod:`.corruption`) and the
accumulator every task's meter builds on (:mod:`.meter`)."""
