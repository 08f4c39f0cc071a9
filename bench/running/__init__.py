"""Running a sweep: the Hydra app, a row's identity, the runner and its workers, the results store, task evaluation."""
