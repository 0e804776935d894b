"""The commands layer: one module per `instruct-tune <command>`, each with `run(cfg) -> int`.

A command module is cheap to import (the stages it calls are imported inside `run`), so the CLI
can check options and paths (`preflight`, where a command has one) before torch or transformers
load. The stages (data, train, evaluate, audit, serve, demo) stay libraries that never import
this package.
"""
