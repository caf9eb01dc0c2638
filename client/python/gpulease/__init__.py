"""gpulease: the Python client of a gpulease node (docs/PYTHON.md)."""
from .status import *  # noqa: F401,F403
from .status import GpuleaseError, Status, NodeError, WireError, ConnectionLostError, LeaseLostError
from .wire import Opcode, Exclusivity, LeaseState, ImageFormat, Limits, ANY_DEVICE
from . import tokens, wire

__version__ = "0.1.0"
