"""The interactive persona explorer: `python -m persona.app` (a Gradio page, offline, on localhost).

`actions` does the work (plain functions over one loaded model), `browse` reads the vector and
output folders, `render` draws, `ui` builds the page and `__main__` serves it (its flags are
`persona.cli.commands.app_args`).
Gradio's analytics and version check call the network unless told not to, before it is imported.
"""

import os

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
