"""``lmtwin serve``: twins over HTTP and MQTT, with live updates and a dashboard.

    from lmtwin.service import Settings, create_app
    app = create_app(Settings(store="twins.db"))
"""

from lmtwin.service.app import create_app
from lmtwin.service.core import TwinService
from lmtwin.service.settings import Settings

__all__ = ["Settings", "TwinService", "create_app"]
