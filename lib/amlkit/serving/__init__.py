"""Deployment (notebooks 06-07): package a model version as a service, serve it, score files.

Import the modules you need explicitly (``from amlkit.serving import package, server``);
this file imports nothing, so a service folder carries only the modules its scoring script
imports (:func:`amlkit.serving.package.runtime_modules`).

Building a service: :mod:`.package` (service folders), :mod:`.onnx` (the ONNX fast path and
its parity check) with :mod:`.onnx_converters` (skl2onnx converters). Running it:
:mod:`.scoring_script` (Azure's ``init()``/``run()``, copied into each service folder),
:mod:`.requests` (request parsing), :mod:`.runtime` (model loading and scoring) with
:mod:`.onnx_inputs`, :mod:`.auth` (endpoint keys), :mod:`.requestlog`. Around it:
:mod:`.server` (azmlinfsrv on loopback), :mod:`.bluegreen` (a local traffic router),
:mod:`.batch` (file scoring).
"""
