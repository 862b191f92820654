"""Following jobs: how often Slurm is asked while waiting."""

from itertools import islice

from hpcctl.runs import follow


def test_polls_back_off_from_half_a_second_to_at_most_five():
    delays = list(islice(follow.polls(), 12))
    assert delays[0] == follow.FIRST_POLL_S == 0.5
    assert all(later >= earlier for earlier, later in zip(delays, delays[1:]))
    assert delays[-1] == max(delays) == follow.LAST_POLL_S == 5.0
