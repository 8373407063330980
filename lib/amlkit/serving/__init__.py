"""Deployment (notebooks 06-07): package a model version as a service, serve it, score files.

Imports nothing, so a service folder carries only the modules its scoring script imports.
"""
