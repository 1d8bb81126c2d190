"""Multi-Persona Dynamics: persona vectors in a chat model's residual stream.

The library behind every script in this repository. One module per idea:
`models` (loading), `steering` (hooks), `activations` (capture), `generation`,
`judge`, `traits`, `vectors`, `projection`, `training`, `io`.
"""

__version__ = "0.1.0"
