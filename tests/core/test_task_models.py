"""Every task model exported from pyro_betalstm.models passes the shared task battery."""

import pytest

from pyro_betalstm.testing.tasks import (
    TASK_CASES,
    TaskModelTests,
    missing_task_cases,
    task_model_classes,
)


@pytest.fixture(params=list(TASK_CASES.values()), ids=lambda case: case.name)
def task_case(request):
    return request.param


@pytest.fixture(params=["sigmoid", "bivariate"])
def gate(request):
    return request.param


class TestTaskModels(TaskModelTests):
    pass


def test_every_exported_task_model_has_a_case():
    assert len(task_model_classes()) >= 4
    assert missing_task_cases() == []


def test_a_task_model_without_a_case_is_named(monkeypatch):
    from pyro_betalstm import models

    class Unregistered(models.GateModel):
        pass

    monkeypatch.setattr(models, "Unregistered", Unregistered, raising=False)
    monkeypatch.setattr(models, "__all__", [*models.__all__, "Unregistered"])
    assert missing_task_cases() == ["Unregistered"]
