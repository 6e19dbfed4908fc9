"""A search's preparation: from its options to the problem (profile, layer graph, allowed
pairs, decisions, cost table, task quality, objectives and constraints), checked before
anything is evaluated."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from hwq.allowed_bits import check_pairs
from hwq.errors import UserError
from hwq.objectives import QUALITY_OBJECTIVES
from hwq.search.algorithms import spec
from hwq.search.config import DEFAULT_OBJECTIVES, LM_DEFAULT_OBJECTIVES, SearchConfig
from hwq.search.problem import SearchProblem, parse_constraints, parse_objectives, unpriced

log = logging.getLogger("hwq.search")


@dataclass
class Prepared:
    config: SearchConfig
    profile: Any
    graph: Any
    encoding: Any
    table: Any
    problem: SearchProblem


def default_objectives(config: SearchConfig) -> list[str]:
    from hwq.models import is_causal_lm
    from hwq.search.quality_sources import no_quality_message
    from hwq.trained import has_trained_model

    defaults = DEFAULT_OBJECTIVES
    if is_causal_lm(config.model, dict(config.model_args or {})):
        defaults = LM_DEFAULT_OBJECTIVES
    if config.sensitivity:
        return ["sensitivity", *defaults[1:]]
    if has_trained_model(config.model, config.weights, config.data):
        return list(defaults)
    raise UserError(
        no_quality_message(f"{defaults[0]} (a default objective)", config.model)
        + "; or choose cost objectives only, e.g. --objectives latency,energy,weight_memory"
    )


def priced_defaults(objectives: list[str], table: Any) -> list[str]:
    """The default objectives less a cost the device has no model of (a measured `lut` profile
    has latency but no energy), with a warning naming it."""
    kept = []
    for name in objectives:
        if name not in QUALITY_OBJECTIVES and unpriced(name, table):
            log.warning("default objective %s left out: device %s (kind %s) has no %s model",
                        name, table.profile.name, table.profile.kind, name)
            continue
        kept.append(name)
    return kept


def prepare(config: SearchConfig, quality: Any = None, executor: Any = None) -> Prepared:
    """Resolve every option: profile, graph, pairs, encoding, cost table, quality, problem.
    `config.objectives` is set to the resolved objectives."""
    from hwq.model_source import load_graph
    from hwq.profile import load_profile
    from hwq.search.encoding import Encoding, parse_pin_specs
    from hwq.search.quality_sources import (
        CallableQuality,
        PerplexityQuality,
        QualitySource,
        SensitivityQuality,
        resolve_quality,
    )
    from hwq.tables import cost_table
    from hwq.units import parse_pairs

    config.validate()
    defaulted = not config.objectives
    objectives = default_objectives(config) if defaulted else parse_objectives(config.objectives)
    constraints = parse_constraints(config.max)
    profile = load_profile(config.device)
    graph = load_graph(
        config.model,
        dict(config.model_args or {}),
        tuple(config.input_shape) if config.input_shape else None,
        config.weights,
        config.input_dtype,
        config.phase,
        config.context,
    )
    if len(graph) == 0:
        raise UserError(f"model {config.model}: no quantizable layers to search")
    pairs = parse_pairs(config.bits) if config.bits else list(profile.default_pairs())
    check_pairs(profile, pairs)  # before any tracing or training
    pins = parse_pin_specs(config.pin, graph)
    encoding = Encoding(graph, pairs, pins, config.tie)
    table = cost_table(graph, profile, bits=encoding.all_pairs())
    if defaulted:  # the defaults the device can price; a cost named by the user is checked
        objectives = priced_defaults(objectives, table)
    config.objectives = objectives
    qname = next((o for o in [*objectives, *constraints] if o in QUALITY_OBJECTIVES), None)
    if quality is None:
        quality = resolve_quality(
            qname,
            model=config.model,
            sensitivity_file=config.sensitivity,
            encoding=encoding,
            table=table,
            weights=config.weights,
            data=config.data,
            model_args=config.model_args,
            finetune_epochs=int(config.finetune_epochs),
        )
    elif int(config.finetune_epochs) > 0:
        raise UserError(
            "--finetune-epochs: fine-tuning applies to hwq's accuracy jobs on a trained model, "
            "not to a given quality function or source"
        )
    elif not isinstance(quality, QualitySource):
        if qname is None:
            raise UserError(
                "quality: a quality function needs accuracy or sensitivity among the objectives"
            )
        quality = CallableQuality(quality, qname)
    elif qname is not None and quality.name != qname:
        raise UserError(f"objective {qname}: the given quality source measures {quality.name}")
    if isinstance(quality, SensitivityQuality | PerplexityQuality) and quality.pins:
        encoding = encoding.with_pins(quality.pins)  # matmul rows it lacks / keeps in float
        if set(encoding.all_pairs()) - set(table.pairs):  # 16x16 outside --bits
            table = cost_table(graph, profile, bits=encoding.all_pairs())
    problem = SearchProblem(encoding, table, objectives, constraints, quality, executor)
    problem.check_constraints_reachable()
    check = spec(config.algorithm).check
    if check is not None:
        check(problem)
    return Prepared(config, profile, graph, encoding, table, problem)
