"""The α,β-CROWN-style pipeline: YAML configs with ``Customized(...)`` hooks (``config``, ``customized``),
problems built from them (``problems``), one certify run and its files (``outcomes``), instances.csv
batch runs (``instances``), the demo (``demo``) and cached reproduction runs (``runs``)."""
from lirpa_lid.pipeline.config import RunConfig, load_config, parse_config
from lirpa_lid.pipeline.customized import Customized, parse_customized
from lirpa_lid.pipeline.instances import read_instances
from lirpa_lid.pipeline.outcomes import Outcome, OutcomeStatus, run_problem, write_outcome
from lirpa_lid.pipeline.problems import Problem, build_problem, load_spec

__all__ = [
    "Customized", "Outcome", "OutcomeStatus", "Problem", "RunConfig", "build_problem", "load_config", "load_spec",
    "parse_config", "parse_customized", "read_instances", "run_problem", "write_outcome",
]
