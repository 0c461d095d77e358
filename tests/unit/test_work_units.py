"""`make test`'s work units: a file each, except the files on the session's shared Prefect server (one unit), and
the private method of pytest-xdist's scheduler that tests/conftest.py overrides to get them."""

from __future__ import annotations

import inspect

from tests.conftest import work_unit


def test_a_file_is_a_unit_and_the_shared_server_files_are_one() -> None:
    assert work_unit("tests/e2e/test_local_flow.py::test_x") == "tests/e2e/test_local_flow.py"
    assert work_unit("tests/e2e/test_local_flow.py::Case::test_x[a::b]") == "tests/e2e/test_local_flow.py"
    assert work_unit("tests/integration/prefect/test_ui.py::test_x") == work_unit(
        "tests/integration/prefect/test_deployments.py::test_y[local]") == "prefect-server"
    assert work_unit("tests/integration/prefect_like/test_z.py::test_x") == "tests/integration/prefect_like/test_z.py"


def test_the_installed_xdist_schedules_by_the_scope_tests_conftest_overrides() -> None:
    """The override is private API: an xdist that no longer splits work by ``_split_scope`` fails here, not by
    starting the shared server twice unseen."""
    from xdist.scheduler import LoadFileScheduling, LoadScopeScheduling

    assert callable(getattr(LoadFileScheduling, "_split_scope", None))
    assert "self._split_scope(" in inspect.getsource(LoadScopeScheduling)
