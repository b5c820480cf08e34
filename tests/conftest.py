"""How `make test` spreads the fast suite over its workers (pytest-xdist, `-n N --dist loadfile`).

A work unit is a test file, so its module fixtures are built once, on one worker; except the files in SPREAD, whose
tests are units of their own (the notebook checks: each runs its notebook in its own process and shares nothing with
the others). The units are queued longest first (COST: seconds on the 2-core CI machine, for the order only; a unit
not listed is short and keeps its place after them), so that the workers take the long ones first and finish together.
The slow suite (`make test-slow`) is spread the same way, on one more worker (`SLOW_WORKERS`): its longest unit, the
Slurm tests, mostly waits for the scheduler, so one worker waits with it while the others keep the cores busy.
Without xdist (`TEST_WORKERS=0`) the tests run in one process in the same order.

Not `--dist loadgroup` with `xdist_group` marks: under pytest 9.2 and pytest-xdist 3.8 that grouping is silently lost
(pytest-xdist issue #1386: the group is appended to a node id attribute pytest no longer reads), and the tests of a file
would be spread one by one, each worker building the file's module fixtures again."""
import pytest

SPREAD = {"test_notebooks.py"}
COST = {"test_slurm.py": 410, "test_notebooks.py::test_notebook_slow_cells[07_evaluate]": 130,    # the slow suite's
        "test_benchmarks_real.py": 64, "test_fresh_clone.py": 62, "test_install.py": 51, "test_gpu_env.py": 48,
        "test_docs.py": 42, "test_checkpoints.py": 34, "test_gpus.py": 25,
        "test_pipeline.py": 130, "test_figures.py": 75, "test_records.py": 50, "test_notebooks.py::test_notebook[06_tiny]": 47,
        "test_provenance.py": 26, "test_trainer.py": 21, "test_notebooks.py::test_notebook[08_finetune]": 21,
        "test_notebooks.py::test_notebook[02_theory]": 21, "test_notebooks.py::test_notebook[05b_judges]": 20,
        "test_paper_pipeline.py": 18, "test_notebooks.py::test_notebook[09c_slurm]": 16,
        "test_notebooks.py::test_notebook[03_trainer]": 15, "test_notebooks.py::test_notebook[09_sweep]": 14,
        "test_notebooks.py::test_notebook[10_paper]": 14, "test_paper_scale.py": 14, "test_sweep.py": 13,
        "test_notebooks.py::test_notebook[12_cli]": 12, "test_notebooks.py::test_notebook[07_evaluate]": 11,
        "test_notebooks.py::test_notebook[11_testing]": 10, "test_notebooks.py::test_notebook[05_rewards]": 10,
        "test_notebooks.py::test_notebook[09e_figures]": 8, "test_readme.py": 7,
        "test_notebooks.py::test_notebook[04_data]": 6,
        "test_notebooks.py::test_notebook[08b_benchmarks]": 6}


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: long tests, run by `make test-slow` (and CI after `make test`)")


def unit(nodeid: str) -> str:
    "The work unit of the test `nodeid` (tests/FILE.py::NAME): its file, or in SPREAD, the test itself."
    path = nodeid.split("::", 1)[0]
    return nodeid if path.rsplit("/", 1)[-1] in SPREAD else path


def cost(nodeid: str) -> float:
    return COST.get(unit(nodeid).removeprefix("tests/"), 0)


def pytest_collection_modifyitems(config, items):
    "Longest unit first; stable, so a unit's tests keep their order (the scheduler queues units as they first appear)."
    items.sort(key=lambda item: -cost(item.nodeid))


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    "`--dist loadfile`, with the SPREAD files' tests units of their own, queued in the collection's order."
    if config.getvalue("dist") != "loadfile": return None
    from xdist.scheduler import LoadFileScheduling

    class SpreadScheduling(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:        # the method by which xdist's schedulers group tests
            return unit(nodeid)

    config.option.loadscopereorder = False      # xdist's default queues the units with the most tests first
    return SpreadScheduling(config, log)
