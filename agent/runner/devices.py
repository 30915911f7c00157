"""The `--device` a run uses: Paddle's built-in types (cpu, gpu, xpu) or any PaddleCustomDevice type (npu, ...)."""

from __future__ import annotations

from importlib import metadata
from typing import Any

from agent.errors import AgentError
from agent.i18n import _

BUILT_IN = ("cpu", "gpu", "xpu")


def available_device_types() -> list[str]:
    """Return the device types this Paddle build can run on."""
    import paddle

    types = ["cpu"]
    if paddle.is_compiled_with_cuda() or paddle.is_compiled_with_rocm():
        types.append("gpu")
    if paddle.is_compiled_with_xpu():
        types.append("xpu")
    types.extend(paddle.device.get_all_custom_device_type() or [])
    return types


def check_device(device: str) -> None:
    """Raise AgentError when this Paddle build cannot run on `device`."""
    available = available_device_types()
    if device not in available:
        raise AgentError(
            "device_not_available",
            _("device type {device} is not available in this Paddle build").format(device=repr(device)),
            _("use one of: {names}; a custom device needs its PaddleCustomDevice plugin installed").format(names=", ".join(available)),
        )


def visible_device_count(device: str) -> int:
    """Return how many devices of the type this node shows to Paddle (1 for the CPU)."""
    import paddle

    if device == "cpu":
        return 1
    if device == "gpu":
        return paddle.device.cuda.device_count()
    if device == "xpu":
        return paddle.device.xpu.device_count()
    return len([name for name in paddle.device.get_available_custom_device() if name.split(":")[0] == device])


def device_plugins() -> dict[str, str]:
    """Return the installed PaddleCustomDevice plugin distributions and their versions."""
    plugins = {}
    for distribution in metadata.distributions():
        name = distribution.metadata["Name"] or ""
        if name.lower().replace("_", "-").startswith("paddle-custom"):
            plugins[name] = distribution.version
    return plugins


def device_record(device: str, processes: int) -> dict[str, Any]:
    """Describe the device for environment.json: type, visible count, processes and plugins."""
    return {"type": device, "count": visible_device_count(device), "processes": processes, "plugins": device_plugins()}
