"""The tracking store layer: the only modules that talk to MLflow.

- `location`: where the store is (`mlruns/` or `MLFLOW_TRACKING_URI`, the Optuna storage beside
  it, the UI's links) and how it is opened to read, which never writes;
- `maintenance`: what keeps a local store sound, run only when a command opens it to write:
  pointing a moved store at its own files, finding runs whose process died;
- `writing`: opening the store to write, and the run writer (params, metrics, artifacts,
  checkpoints, the model, a run's life from start to end);
- `reading`: runs, metrics, artifacts, checkpoints and models read back, as plain Python values
  and DataFrames, never MLflow's entities.
"""
