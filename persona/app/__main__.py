"""`python -m persona.app`: load the model and its generation backend, then serve the explorer.

The flags are parsed in `persona.cli.commands.app_args` (see `--help`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from persona.cli import judge_settings, run_cli, setup_logging
from persona.cli.commands import app_args

log = logging.getLogger("persona.app")

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def main(argv: Sequence[str] | None = None) -> int:
    args = app_args(argv)
    setup_logging()
    if args.host not in LOCAL_HOSTS:
        log.warning("serving on %s: anyone who can reach this machine can use the explorer and the model", args.host)
    from persona.models import load_model
    from persona.vllm_backend import make_backend

    lm = load_model(args.model, device=args.device, dtype=args.dtype)
    backend = make_backend(
        args.backend, lm, batch_size=args.batch_size, gpu_memory_utilization=args.gpu_memory_utilization
    )
    from persona.app.actions import Explorer
    from persona.app.ui import build_app, launch

    explorer = Explorer(lm, judge_settings(args), backend=backend)
    launch(build_app(explorer, args.vector_dir, args.results_dir), args.host, args.port)
    return 0


if __name__ == "__main__":
    run_cli(main)
