"""Tests of the deployment artefacts: the Dockerfile and the Helm chart (no Docker engine, no cluster)."""
