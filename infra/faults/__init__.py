"""Fault injectors for the reliability suites (``tests/reliability``, ``orderhub selftest``): crash points in
the data path (:mod:`.crash`), database faults from a side connection (:mod:`.db`) and the hostile-input corpus
(:mod:`.hostile`)."""
