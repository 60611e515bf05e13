"""Compatibility shim for the original Python client lynk==0.3.1.

lynk 0.3.1 (2019) reads ``leaseDuration`` back from DynamoDB as a
``decimal.Decimal`` and hands it straight to ``time.sleep`` via
``lynk.utils.TimeUtils.sleep``.  Since Python 3.10 ``time.sleep(Decimal)``
raises ``TypeError: 'decimal.Decimal' object cannot be interpreted as an
integer`` (3.9 truncated it to an int with a DeprecationWarning).  This shim
patches ``TimeUtils.sleep`` to call ``time.sleep(float(amt))``; nothing else
about lynk's behaviour is changed.

Use either:

* ``install()`` -- installs a lazy import hook that patches ``lynk.utils`` the
  moment it is imported (cheap; this is what the ``pylynk_shim.pth`` file that
  ``scripts/install-test-servers.sh`` drops into ``.tools/venv`` calls, so any
  ``.tools/venv/bin/python`` process gets the fix automatically), or
* ``patch_now()`` -- import lynk.utils and patch it immediately.
"""
import importlib.abc
import importlib.util
import sys
import time

_TARGET = "lynk.utils"


def _patched_sleep(self, amt):
    time.sleep(float(amt))


_patched_sleep._pylynk_shim = True


def _patch_module(mod):
    cls = getattr(mod, "TimeUtils", None)
    if cls is not None and not getattr(cls.sleep, "_pylynk_shim", False):
        cls.sleep = _patched_sleep


def patch_now():
    import lynk.utils

    _patch_module(lynk.utils)
    return lynk.utils


class _Loader(importlib.abc.Loader):
    def __init__(self, inner):
        self._inner = inner

    def create_module(self, spec):
        return self._inner.create_module(spec)

    def exec_module(self, module):
        self._inner.exec_module(module)
        _patch_module(module)


class _Finder(importlib.abc.MetaPathFinder):
    _pylynk_shim = True

    def find_spec(self, fullname, path, target=None):
        if fullname != _TARGET:
            return None
        for finder in sys.meta_path:
            if finder is self:
                continue
            find = getattr(finder, "find_spec", None)
            if find is None:
                continue
            spec = find(fullname, path, target)
            if spec is not None and spec.loader is not None:
                spec.loader = _Loader(spec.loader)
                return spec
        return None


def install():
    """Patch lynk.utils now if already imported, else when it gets imported."""
    if _TARGET in sys.modules:
        _patch_module(sys.modules[_TARGET])
        return
    if not any(getattr(f, "_pylynk_shim", False) for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder())
