"""The one base class of errors a user fixes by changing an input.

Library code raises an `InputError` subclass for a bad file, vector, layer, trait, config,
model or missing setting, naming the parameter; `persona.cli.run_cli` prints its one line
and exits 2. It subclasses ValueError, so code that catches ValueError keeps working.
"""

from __future__ import annotations


class InputError(ValueError):
    """A bad input: the message names it and the fix."""
