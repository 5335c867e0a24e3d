"""jobs.yaml: the key table, the reader, the parser, and what is generated from them.

- keys.py       every key described once (type, default, check, doc, since-version)
- checks.py     the value checks the table names, and the issue collector
- reader.py     YAML text → data + the line of every key (one parse)
- parser.py     data → a validated `Config`, with the rules that span keys
- schema.py     the JSON Schema (`scheduler.py schema`, jobs.schema.json)
- reference.py  the README's reference tables (`make docs`)
"""

from lib.config.keys import AWS, DOCKER, JOB, TOP_LEVEL
from lib.config.parser import Config, load_config, parse_config

AWS_KEYS = AWS.names
DOCKER_KEYS = DOCKER.names
JOB_KEYS = JOB.names
TOP_LEVEL_KEYS = TOP_LEVEL.names

__all__ = [
    "AWS_KEYS",
    "DOCKER_KEYS",
    "JOB_KEYS",
    "TOP_LEVEL_KEYS",
    "Config",
    "load_config",
    "parse_config",
]
