//! Experiment grids: run every cell (train, evaluate, probe), cached and resumable (being implemented).
