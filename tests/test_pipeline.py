"""`pipeline.train_run` in process: what one run leaves behind in the process that ran it."""

import gc

from toolkit.config import RunConfig
from toolkit.pipeline import train_run


def test_a_run_unfreezes_what_it_froze_so_a_next_trial_can_free_its_data(tiny_data, store):
    config = RunConfig(latent_dim=2, hidden=(16,), epochs=1, fid="off", iw_samples=0, figures="off")
    assert gc.get_freeze_count() == 0
    train_run(config, data_dir=tiny_data, quiet=True)
    assert gc.get_freeze_count() == 0
