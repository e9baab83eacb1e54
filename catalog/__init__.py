"""qianfan-catalog: sync a Baidu Qianfan model catalog into SQL tables with full history."""

__version__ = "0.1.0"
