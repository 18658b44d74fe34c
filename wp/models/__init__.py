"""The five networks of the paper, one builder per architecture, behind a registry."""

from wp.models.registry import check_name, create, names, register
from wp.models import mobilenet_v2, resnet, tinyconv  # noqa: F401  (registers the builders)

__all__ = ["create", "names", "register", "check_name"]
