"""The experiment runner the example scripts share (``examples/*.py``).

:mod:`.runner` resolves settings (the protocol's defaults, then ``--smoke``, then explicit
flags), builds the :class:`~pyro_betalstm.infer.TrainConfig`, trains and writes the run's files
(:mod:`pyro_betalstm.results` describes them). The task modules hold what one example needs
that is too long for a script: :mod:`.music` (protocols), :mod:`.text` (cross-validation
folds), :mod:`.captions` (decoding and caption scores).
"""

from ..variants import add_run_arguments, add_variant_arguments
from .runner import (
    Run,
    Stopwatch,
    add_setting_flags,
    announce_scoring,
    begin,
    count_parameters,
    describe_scores,
    evaluate_accuracy,
    is_main_process,
    model_prior,
    plain_text,
    predictive_draws,
    print_files,
    resolve_settings,
    run_footer,
    run_header,
    run_label,
    run_name,
    run_script,
    run_settings,
    save_gate_draws,
    start_run,
    train,
    train_config,
    training_summary,
    write_results,
)

__all__ = [
    "Run",
    "Stopwatch",
    "add_run_arguments",
    "add_setting_flags",
    "add_variant_arguments",
    "announce_scoring",
    "begin",
    "count_parameters",
    "describe_scores",
    "evaluate_accuracy",
    "is_main_process",
    "model_prior",
    "predictive_draws",
    "print_files",
    "resolve_settings",
    "run_footer",
    "run_header",
    "plain_text",
    "run_label",
    "run_name",
    "run_script",
    "run_settings",
    "save_gate_draws",
    "start_run",
    "train",
    "train_config",
    "training_summary",
    "write_results",
]
