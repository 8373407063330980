"""Deployment: package a model version as a service, serve it locally, score files, Azure specs.

Modules: :mod:`.package` (service folders), :mod:`.server` (azmlinfsrv on loopback),
:mod:`.requests` (request parsing), :mod:`.runtime` (model loading and scoring),
:mod:`.onnx` (fast path) with :mod:`.onnx_converters` (skl2onnx converters for the
amlkit.training.transformers steps), :mod:`.auth` (endpoint keys), :mod:`.requestlog`, :mod:`.batch`
(file scoring), :mod:`.azure` (managed online endpoint specs), :mod:`.commands` (the
``amlkit package/serve/keys/score/deploy`` subcommands).
Heavy libraries are imported inside the functions that need them.
"""

from amlkit.serving.auth import regenerate_key, show_keys
from amlkit.serving.batch import score_file
from amlkit.serving.package import package_service, service_info
from amlkit.serving.server import LocalEndpoint, serve, start_server

__all__ = [
    "LocalEndpoint",
    "package_service",
    "regenerate_key",
    "score_file",
    "serve",
    "service_info",
    "show_keys",
    "start_server",
]
