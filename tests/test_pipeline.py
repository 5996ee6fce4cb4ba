"""`pipeline.train_run` in process: what one run leaves behind in the process that ran it."""

import gc
import weakref

from conftest import TINY

from toolkit.pipeline import train_run


class Node:
    """An object in a reference cycle: only the cyclic collector frees it."""

    def __init__(self):
        self.itself = self


def test_what_a_run_froze_and_is_garbage_now_is_collected_when_the_next_run_starts(tiny_data, store):
    held = Node()  # alive when the first run freezes what exists, as a trial's data is
    gone = weakref.ref(held)
    train_run(TINY, data_dir=tiny_data, quiet=True)
    del held
    gc.collect()
    assert gone() is not None and gc.get_freeze_count() > 0  # frozen: a collection passes it over
    train_run(TINY, data_dir=tiny_data, quiet=True)  # a study's next trial in the same process
    assert gone() is None
