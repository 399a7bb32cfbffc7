from importlib.metadata import version

import alpha
import beta


def test_the_constraint_picks_the_older_beta():
    assert (version("alpha"), version("beta")) == ("1.0", "1.0")
    assert (alpha.VERSION, beta.VERSION) == ("1.0", "1.0")
