"""kie-async: an asyncio-native client SDK for Kie.ai."""

from kie_async._version import __version__

__all__ = ["__version__"]
