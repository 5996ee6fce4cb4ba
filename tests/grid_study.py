"""A four-point grid study for the tests of the study machinery (workers, kills, resumes, shared
storages): the command line every study script shares, on a third of the posterior-collapse grid
(warm-up {0, 10} × free bits {0, 0.25}, σ fixed), so that each such test trains four trials, not twelve.
Run: python tests/grid_study.py --quick"""

from toolkit.cli import study_main
from toolkit.config import RunConfig
from toolkit.studies import Study

GRID = {
    f"warmup{warmup}-fb{free_bits:g}": {"warmup_epochs": warmup, "free_bits": free_bits}
    for warmup in (0, 10)
    for free_bits in (0, 0.25)
}

if __name__ == "__main__":
    study_main(
        Study(
            "grid-study",
            RunConfig(likelihood="gaussian", epochs=20),
            grid=GRID,
            pruner="none",
            report="posterior-collapse",
        )
    )
