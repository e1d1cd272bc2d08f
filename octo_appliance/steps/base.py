"""The step-type interface, kept at its old import path: it lives in
:mod:`octo_appliance.plugin_api.steps` (the plugin API), which plugins should import."""

from __future__ import annotations

from octo_appliance.plugin_api.steps import (
    TARGET_RUN_STATES,
    TRANSFER_MODES,
    FieldProblem,
    InterruptionAnswer,
    MakeRequest,
    OutputValue,
    PackageInfo,
    PackageTransfer,
    RunnerRequest,
    StepContext,
    StepFailed,
    StepInfo,
    StepTarget,
    StepType,
    TargetCode,
    TargetRun,
)

__all__ = [
    "TARGET_RUN_STATES",
    "TRANSFER_MODES",
    "FieldProblem",
    "InterruptionAnswer",
    "MakeRequest",
    "OutputValue",
    "PackageInfo",
    "PackageTransfer",
    "RunnerRequest",
    "StepContext",
    "StepFailed",
    "StepInfo",
    "StepTarget",
    "StepType",
    "TargetCode",
    "TargetRun",
]
