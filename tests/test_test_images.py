"""The test suite's own images: reused while what they are built from is unchanged, replaced without leaving dangling images."""

from __future__ import annotations

from pathlib import Path

import docker.errors
import pytest
from images import build, engine

pytestmark = pytest.mark.docker

TAG = "benchflow-test/images-reuse:1"


def test_an_image_is_reused_while_its_inputs_are_unchanged_and_its_old_version_removed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = engine()
    stamp = tmp_path / "stamp"
    files = {"Dockerfile": "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nCOPY stamp /stamp\n"}
    try:
        stamp.write_text("one")
        monkeypatch.setenv("PYTEST_XDIST_TESTRUNUID", "first-run")
        first = client.images.get(build(client, TAG, files, extra={"stamp": stamp})).id
        # A later test run, nothing changed: the same image, not a rebuild.
        monkeypatch.setenv("PYTEST_XDIST_TESTRUNUID", "second-run")
        assert client.images.get(build(client, TAG, files, extra={"stamp": stamp})).id == first
        # Something it is built from changed: a new image, and the one it replaces is gone, not dangling.
        stamp.write_text("two")
        monkeypatch.setenv("PYTEST_XDIST_TESTRUNUID", "third-run")
        second = client.images.get(build(client, TAG, files, extra={"stamp": stamp})).id
        assert second != first
        with pytest.raises(docker.errors.ImageNotFound):
            client.images.get(first)
    finally:
        client.images.remove(TAG)
