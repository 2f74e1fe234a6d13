"""Deploy targets by name: `DEPLOYERS["fly"]` is the Fly.io deployer, and so on.

Each one knows its prerequisites, the manifest it writes (if any), the exact commands it
needs (its plan) and how to run them; tools/day_one.py drives them.
"""

from __future__ import annotations

from .base import Deployer
from .fly import FlyDeployer
from .local import LocalDeployer
from .render import RenderDeployer
from .tunnel import TunnelDeployer

DEPLOYERS: dict[str, type[Deployer]] = {
    deployer.name: deployer
    for deployer in (LocalDeployer, TunnelDeployer, FlyDeployer, RenderDeployer)
}

__all__ = ["DEPLOYERS", "Deployer"]
