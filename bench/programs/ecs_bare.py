"""Python + boto3 + one ECS client, nothing else: the floor under the ECS daemon.

argv: ENDPOINT REGION. Prints `BARE <VmRSS kB>`.
"""

import sys

from _self import vmrss_kb

endpoint, region = sys.argv[1], sys.argv[2]
import boto3  # noqa: E402

client = boto3.session.Session().client("ecs", region_name=region, endpoint_url=endpoint)
print(f"BARE {vmrss_kb()}", flush=True)
