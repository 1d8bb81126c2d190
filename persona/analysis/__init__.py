"""Analysis behind the study's figures: vector geometry, result tables and multi-persona experiments.

Every function here takes data (frames, tensors) and returns numbers or frames; `viz/`
draws them and finds the files. `stats` holds the numeric helpers every figure shares.
"""
