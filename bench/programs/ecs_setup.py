"""Creates on a moto server what the ECS daemon's runs need, and checks moto stops a task.

argv: ENDPOINT NAMES_JSON (region, cluster, bucket, task_family, container_name,
log_group). Creates the cluster, a container instance, the task definition, the log
group and the bucket; sets moto's state manager so a task is STOPPED the first time
it is described, and checks that on one task. Prints `SETUP {json}`.
"""

import json
import sys
import time
import urllib.request

endpoint, names = sys.argv[1], json.loads(sys.argv[2])
began = time.monotonic()
import boto3  # noqa: E402  (timed with the rest)

session = boto3.session.Session()


def client(name):
    return session.client(name, region_name=names["region"], endpoint_url=endpoint)


ecs, ec2, logs, s3 = (client(n) for n in ("ecs", "ec2", "logs", "s3"))
ecs.create_cluster(clusterName=names["cluster"])
# EC2 RunTask needs a registered container instance; moto answers DescribeImages slowly: filter it.
images = ec2.describe_images(Owners=["amazon"], Filters=[{"Name": "name", "Values": ["amzn2-ami-ecs*"]}])
image = (images["Images"] or ec2.describe_images(Owners=["amazon"])["Images"])[0]["ImageId"]
instance = ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
ecs.register_container_instance(
    cluster=names["cluster"], instanceIdentityDocument=json.dumps({"instanceId": instance})
)
# moto gives a task's memory back only on StopTask, not when its state manager stops
# it: 64 MB per task leaves room for 116 runs on the instance's 7482 MB.
container = {
    "name": names["container_name"],
    "image": "dbt-scheduler:latest",
    "memory": 64,
    "logConfiguration": {
        "logDriver": "awslogs",
        "options": {
            "awslogs-group": names["log_group"],
            "awslogs-region": names["region"],
            "awslogs-stream-prefix": "dbt",
        },
    },
}
revision = ecs.register_task_definition(
    family=names["task_family"], containerDefinitions=[container], requiresCompatibilities=["EC2"]
)["taskDefinition"]["revision"]
logs.create_log_group(logGroupName=names["log_group"])
s3.create_bucket(Bucket=names["bucket"], CreateBucketConfiguration={"LocationConstraint": names["region"]})
body = json.dumps({"model_name": "ecs::task", "transition": {"progression": "immediate"}}).encode()
url = endpoint + "/moto-api/state-manager/set-transition"
urllib.request.urlopen(urllib.request.Request(url, data=body, method="POST")).read()
url = endpoint + "/moto-api/state-manager/get-transition?model_name=ecs::task"
transition = json.loads(urllib.request.urlopen(url).read())
arn = ecs.run_task(
    cluster=names["cluster"],
    taskDefinition=names["task_family"],
    count=1,
    launchType="EC2",
    startedBy="bench-setup-check",
)["tasks"][0]["taskArn"]
task = ecs.describe_tasks(cluster=names["cluster"], tasks=[arn])["tasks"][0]
facts = {
    "image": image,
    "instance": instance,
    "revision": revision,
    "transition": transition,
    "check_task": task["lastStatus"],
    "check_exit": [c.get("exitCode") for c in task["containers"]],
    "seconds": round(time.monotonic() - began, 2),
}
print("SETUP " + json.dumps(facts), flush=True)
