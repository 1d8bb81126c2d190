"""The command-line layer: argparse and flag names live here, nowhere else in `persona/`.

`values` parses flag values, `flags` defines the flag groups the commands share and turns
them into library objects, `run` ends every command (`run_cli`: one line per failure, the
library's backticked parameters shown as the command's flags), `commands` holds the small
`persona.traits` / `persona.layout` commands.
"""

from persona.cli.commands import layout_main, traits_main
from persona.cli.flags import (
    add_backend_args,
    add_judge_args,
    add_method_args,
    add_model_args,
    add_ray_arg,
    add_scoring_args,
    add_seed_args,
    add_vector_folder_args,
    eval_spec_from_args,
    judge_settings,
    judges_from_args,
    method_options,
    seeds_from_args,
)
from persona.cli.run import VERBOSE_ENV, VERBOSE_FLAG, UsageError, as_flags, error_line, run_cli, setup_logging
from persona.cli.values import (
    add_bool_flag,
    bool_value,
    broadcast,
    finite_float,
    layer_arg,
    load_steers,
    require_positive,
    split_list,
)

__all__ = [
    "VERBOSE_ENV",
    "VERBOSE_FLAG",
    "UsageError",
    "add_backend_args",
    "add_bool_flag",
    "add_judge_args",
    "add_method_args",
    "add_model_args",
    "add_ray_arg",
    "add_scoring_args",
    "add_seed_args",
    "add_vector_folder_args",
    "as_flags",
    "bool_value",
    "broadcast",
    "error_line",
    "eval_spec_from_args",
    "finite_float",
    "judge_settings",
    "judges_from_args",
    "layer_arg",
    "layout_main",
    "load_steers",
    "method_options",
    "require_positive",
    "run_cli",
    "seeds_from_args",
    "setup_logging",
    "split_list",
    "traits_main",
]
