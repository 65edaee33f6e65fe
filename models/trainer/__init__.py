"""Training pipeline of the closed loop: export -> fit -> evaluate -> ONNX -> parity -> publish.

Talks to ``vitalcore-server`` only through its HTTP API, so it runs on any machine that holds
the admin credentials. Entry point: ``python -m trainer train --help`` (run from ``models/``).
"""

__all__ = ["__version__"]

__version__ = "0.1.0"
