"""Explore persona vectors in the browser: steer, watch the trait token by token, browse results.

    python -m persona.app                                   # embedded model, output/demo/vectors
    python -m persona.app --model Qwen/Qwen2.5-7B-Instruct --vector_dir output/persona_vectors/Qwen2.5-7B-Instruct

Serves on http://127.0.0.1:7860 only, fully offline. --host 0.0.0.0 serves every machine that
can reach this one, with no password: anyone there can run the model.
"""

from __future__ import annotations

import argparse
import logging

from persona.cli import add_judge_args, add_model_args, judge_settings, run_cli, setup_logging

log = logging.getLogger("persona.app")

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m persona.app", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_model_args(parser, "--model")
    parser.add_argument(
        "--vector_dir", default="output/demo/vectors", help="folder of persona vectors (.pt) to steer with"
    )
    parser.add_argument(
        "--results_dir", default="output/demo", help="output folder (a demo, a sweep, an experiment) to browse"
    )
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to serve on (default: this machine only). WARNING: 0.0.0.0 lets anyone on your "
        "network use the explorer and the model, without a password",
    )
    parser.add_argument("--port", type=int, default=7860, help="port to serve on")
    parser.add_argument("--batch_size", type=int, default=16, help="generation batch size (the strip packs 5 rows)")
    add_judge_args(parser)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging()
    if args.host not in LOCAL_HOSTS:
        log.warning("serving on %s: anyone who can reach this machine can use the explorer and the model", args.host)
    from persona.models import load_model

    lm = load_model(args.model, device=args.device, dtype=args.dtype)
    from persona.app.actions import Explorer
    from persona.app.ui import build_app, launch

    explorer = Explorer(lm, judge_settings(args), batch_size=args.batch_size)
    launch(build_app(explorer, args.vector_dir, args.results_dir), args.host, args.port)
    return 0


if __name__ == "__main__":
    run_cli(main)
