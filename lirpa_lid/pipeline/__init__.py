"""The α,β-CROWN-style pipeline: YAML configs with ``Customized(...)`` hooks, problems built from them,
instances.csv rows, outcomes, the demo and cached reproduction runs."""
from lirpa_lid.pipeline.config import RunConfig, load_config, parse_config
from lirpa_lid.pipeline.customized import Customized, parse_customized
from lirpa_lid.pipeline.instances import Outcome, read_instances, run_problem, write_outcome
from lirpa_lid.pipeline.problems import Problem, build_problem, load_spec

__all__ = [
    "Customized", "Outcome", "Problem", "RunConfig", "build_problem", "load_config", "load_spec",
    "parse_config", "parse_customized", "read_instances", "run_problem", "write_outcome",
]
