"""Shipping a student: deployable files checked against PyTorch (``datafree deploy``), data-free int8, and a
side-by-side report of the teacher and its students (``datafree report``).

One module per concern: ``sources`` (what is shipped: a run's student, teacher, synthetic and real images),
``formats`` (ONNX, TorchScript, ``torch.export``), ``runners`` (each file run by its engine), ``parity`` (a file
against the PyTorch student), ``quantise`` (int8 with onnxruntime, calibrated on synthetic images), ``deploy``
(the deploy flow and ``deploy.json``), ``metrics``, ``timing``, ``corruptions``, ``charts`` and ``report``.
"""
from datafree.ship.deploy import DeploySettings, deploy_student
from datafree.ship.report import Entry, Images, ReportSettings, build_report, headline, write_report

__all__ = ["DeploySettings", "Entry", "Images", "ReportSettings", "build_report", "deploy_student", "headline",
           "write_report"]
