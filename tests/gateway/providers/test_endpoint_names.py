"""Endpoint names of pass-through paths: the kind of call, never the object it names.

They are the `endpoint` column of events and a label of /metrics, whose slots are few: a client polling
`/batches/batch_1` ... `/batches/batch_50` must not use up every slot and push `chat.completions` into `other`.
"""

from __future__ import annotations

import pytest

from gateway.providers import anthropic, dashscope, openai


@pytest.mark.parametrize(("path", "name"), [
    ("v1/chat/completions", "chat.completions"),
    ("v1/batches", "batches"),
    ("v1/batches/batch_67ccd2bed1ec8190", "batches.{id}"),
    ("v1/files/file-abc123/content", "files.{id}.content"),
    ("v1/models/gpt-4o", "models.{id}"),
    ("v1/fine_tuning/jobs/ftjob-abc123/events", "fine_tuning.jobs.{id}.events"),
    ("v1/vector_stores/vs_abcdefghijklmnopqrstuvwxyz/files", "vector_stores.{id}.files"),
])  # fmt: skip
def test_openai_paths_name_their_kind_of_call(path: str, name: str) -> None:
    assert openai.endpoint_for_path(path) == name


def test_other_apis_paths_name_their_kind_of_call() -> None:
    assert anthropic.endpoint_for_path("v1/files/file_011CNha8iCJcU1wXNR6q4V8w") == "anthropic.files.{id}"
    assert anthropic.endpoint_for_path("v1/messages/batches/msgbatch_01abc/results") == "anthropic.messages.batches"
    assert dashscope.endpoint_for_path("api/v1/tasks/86ecf553-d340-4e21-af6e-a0c6a421c010") == "dashscope.tasks"


def test_many_objects_make_one_endpoint_name() -> None:
    names = {openai.endpoint_for_path(f"v1/batches/batch_{i}") for i in range(50)}
    assert names == {"batches.{id}"}
