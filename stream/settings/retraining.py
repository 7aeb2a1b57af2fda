"""The retraining section of the settings: what the worker records for training, and how
``streaminfer retrain`` picks its data, trains, gates and releases (docs/retraining.md)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field


class RetrainSection(BaseModel):
    """Labels, input snapshots, the retraining job, its gates and its triggers."""

    record_inputs: bool = Field(
        False, description="Workers write the features each request was answered with to "
                           "<ns>.inputs (what retraining trains on; sensitive features go "
                           "sealed with the field keys, or are left out without them).")
    inputs_retention_h: float = Field(
        168.0, gt=0, description="Retention of <ns>.inputs and <ns>.feedback on create, hours.")
    retrain_window_h: float = Field(
        24.0, gt=0, description="Data window: requests answered in the last this many hours.")
    retrain_scheduled_job: str | None = Field(
        None, description="The Kubernetes Job a CronJob made for this run "
                           "(<cronjob>-<scheduled minutes since the epoch>; the manifest sets "
                           "it from the pod's job-name label): the window ends at the "
                           "scheduled time, so a retried pod resumes the same run instead of "
                           "starting a new one (--until-ms wins).")
    retrain_keep_runs_h: float = Field(
        168.0, gt=0, description="Run directories (checkpoints, candidates) older than this "
                                 "many hours are deleted after each run; reports stay in the "
                                 "registry.")
    retrain_label_wait_s: float = Field(
        7 * 86400.0, gt=0, description="A label counts when it arrives within this long "
                                       "after its request was answered (later: counted late).")
    retrain_min_labels: int = Field(
        500, ge=10, description="Fewer joined labels than this: the run stops without training.")
    retrain_holdout: float = Field(
        0.25, gt=0, lt=1, description="The most recent fraction of the window, held out to "
                                      "compare candidate and active versions.")
    retrain_epochs: int = Field(20, ge=1, le=1000, description="Training epochs.")
    retrain_seed: int = Field(7, description="Seed of initialisation and shuffling.")
    retrain_hidden: str = Field(
        "32,16", pattern=r"^\d+(,\d+)*$", description="Hidden layer sizes of the MLP.")
    retrain_min_auc: float = Field(
        0.6, ge=0, le=1, description="Gate: the candidate's holdout AUC must reach this "
                                     "(0.5 is chance), whatever the active version scores.")
    retrain_max_auc_drop: float = Field(
        0.0, ge=0, le=1, description="Gate: candidate AUC may be at most this below the "
                                     "active version's on the holdout.")
    retrain_max_logloss_rise: float = Field(
        0.02, ge=0, description="Gate: candidate log loss may exceed the active's by this.")
    retrain_max_calibration_rise: float = Field(
        0.02, ge=0, description="Gate: candidate expected calibration error may exceed the "
                                "active's by this.")
    retrain_latency_ms_1: float = Field(
        5.0, gt=0, description="Gate: median latency of a batch of 1, milliseconds.")
    retrain_latency_ms_256: float = Field(
        50.0, gt=0, description="Gate: median latency of a batch of 256, milliseconds.")
    retrain_max_model_bytes: int = Field(
        5_000_000, ge=1, description="Gate: largest model.onnx, bytes.")
    retrain_fairness_feature: str | None = Field(
        None, description="Gate (optional): a 0/1 segment feature whose two groups' mean "
                          "scores may differ by at most --retrain-max-fairness-gap more "
                          "than the active version's.")
    retrain_max_fairness_gap: float = Field(
        0.05, ge=0, le=1, description="See --retrain-fairness-feature.")
    retrain_canary_share: float = Field(
        0.2, gt=0, le=1, description="Share of entities a passing candidate serves as canary.")
    retrain_dir: Path | None = Field(
        None, description="Run directories with checkpoints (default $STREAMINFER_HOME/retrain).")
    retrain_sign_key: Path | None = Field(
        None, description="Sign released versions with this Ed25519 private key (PEM).")
    retrain_every_s: float | None = Field(
        None, gt=0, description="Trigger (retrain watch): retrain this often, seconds.")
    retrain_on_labels: int | None = Field(
        None, ge=1, description="Trigger (retrain watch): retrain once this many new labels "
                                "arrived since the last run.")
    retrain_on_psi: float | None = Field(
        None, gt=0, description="Trigger (retrain watch): retrain when the PSI of live "
                                "inputs or scores against the active version's training data "
                                "passes this (0.2 = a marked shift).")
    retrain_check_s: float = Field(
        60.0, gt=0, description="How often retrain watch checks its triggers, seconds.")
