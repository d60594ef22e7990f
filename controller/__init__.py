"""llm-canary: a canary release controller for LLM-powered services.

The decision core (``models``, ``analysis``, ``engine``) is pure; input and output
live at the edges (``judge``, ``sources``, ``actuator``, ``api``, ``cli``).
"""

__version__ = "0.1.0"

API_GROUP = "canary.llmops.dev"
API_VERSION = "v1alpha1"
KIND = "CanaryRule"
PLURAL = "canaryrules"
