"""The one boto3 client factory.

One client per service for the life of the process: a daemon holding 100 ECS jobs
builds one `ecs` client, not 100 (each costs ~1-2 MB and a credentials lookup).
boto3 clients are thread-safe once built; building them is not, hence the lock.
`endpoint_url` points every client at moto (tests) or LocalStack instead of AWS.
"""

from __future__ import annotations

import threading
from typing import Any

from lib.models import AwsSettings


class AwsClients:
    def __init__(self, settings: AwsSettings, session: Any = None) -> None:
        self.settings = settings
        self._session = session
        self._clients: dict[str, Any] = {}
        self._lock = threading.Lock()

    def client(self, service: str, region: str | None = None) -> Any:
        """The shared client for `service` (ecs, s3, iam, ecr, logs, sts…) in aws.region,
        or in `region` (a secret of aws.secrets may live in another Region)."""
        region = region or self.settings.region
        key = service if region == self.settings.region else f"{service}@{region}"
        with self._lock:
            if key not in self._clients:
                if self._session is None:
                    # botocore, not boto3: the same clients without boto3's resource layer,
                    # 2.5 MB less for an idle daemon (bench/idle.py --runner ecs). Imported
                    # here, not at module level: local-only daemons never pay for it.
                    import botocore.session

                    self._session = botocore.session.get_session()
                kwargs: dict[str, Any] = {"region_name": region}
                if self.settings.endpoint_url:
                    kwargs["endpoint_url"] = self.settings.endpoint_url
                # A botocore session has create_client; a boto3 one (tests share one) has client.
                create = getattr(self._session, "create_client", None) or self._session.client
                self._clients[key] = create(service, **kwargs)
            return self._clients[key]

    def ecs(self) -> Any:
        return self.client("ecs")

    def s3(self) -> Any:
        return self.client("s3")

    def logs(self) -> Any:
        return self.client("logs")

    def iam(self) -> Any:
        return self.client("iam")

    def ecr(self) -> Any:
        return self.client("ecr")
