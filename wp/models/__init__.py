"""The five networks of the paper, one builder per architecture, behind a registry; networks of
your own are registered from a file with ``load_file`` (see ``wp.models.registry``)."""

from wp.models.registry import check_name, create, load_file, load_files, names, origin, register
from wp.models import mobilenet_v2, resnet, tinyconv  # noqa: F401  (registers the builders)

__all__ = ["create", "names", "register", "check_name", "load_file", "load_files", "origin"]
