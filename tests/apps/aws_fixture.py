#!/usr/bin/env python3
"""The AWS side of the aws-ecs pack's tests, through the AWS API (boto3,
from the moto virtualenv), never through the pack:

  aws_fixture.py create ENDPOINT NAME [POLICY]
                                        make a VPC (DNS hostnames on), two
                                        subnets, a security group, an ALB and
                                        an ECS cluster; print their ids (JSON);
                                        with POLICY (an IAM policy file), also
                                        users "admin" (everything) and "pack"
                                        (POLICY) and their keys: 13 requests
                                        in all, for moto's
                                        INITIAL_NO_AUTH_ACTION_COUNT
  aws_fixture.py inspect ENDPOINT CLUSTER LOAD_BALANCER
                                        print what exists (JSON): listeners
                                        with their forward weights, task
                                        sets, target groups, ACTIVE task
                                        definitions, services; resources are
                                        named by their `envpack:revision` tag
                                        (else their name)
"""
import json
import os
import sys

import boto3


def clients(endpoint):
    # Inspecting a moto that enforces IAM: the admin keys `create` printed.
    kw = dict(endpoint_url=endpoint, region_name="us-east-1",
              aws_access_key_id=os.environ.get("FIXTURE_ACCESS_KEY_ID", "AKIDFIXTURE"),
              aws_secret_access_key=os.environ.get("FIXTURE_SECRET_ACCESS_KEY", "fixture"))
    return boto3.client("ec2", **kw), boto3.client("elbv2", **kw), boto3.client("ecs", **kw)


def user(iam, name, policy):
    iam.create_user(UserName=name)
    iam.put_user_policy(UserName=name, PolicyName=name, PolicyDocument=policy)
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return [key["AccessKeyId"], key["SecretAccessKey"]]


def create(endpoint, name, policy_file=None):
    ec2, elb, ecs = clients(endpoint)
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})
    subnets = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.0.{i}.0/24", AvailabilityZone=f"us-east-1{az}")["Subnet"]["SubnetId"]
        for i, az in ((1, "a"), (2, "b"))
    ]
    sg = ec2.create_security_group(GroupName=name, Description="envpack test", VpcId=vpc)["GroupId"]
    lb = elb.create_load_balancer(Name=name, Subnets=subnets, SecurityGroups=[sg])["LoadBalancers"][0]
    ecs.create_cluster(clusterName=name)
    keys = {}
    if policy_file:
        iam = boto3.client("iam", endpoint_url=endpoint, region_name="us-east-1",
                           aws_access_key_id="AKIDFIXTURE", aws_secret_access_key="fixture")
        everything = json.dumps({"Version": "2012-10-17",
                                 "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]})
        keys = {"admin": user(iam, "admin", everything), "pack": user(iam, "pack", open(policy_file).read())}
    print(json.dumps({**keys,
        "cluster": name,
        "load_balancer": lb["LoadBalancerArn"],
        "vpc": vpc,
        "subnets": ",".join(subnets),
        "security_groups": sg,
    }))


def inspect(endpoint, cluster, load_balancer):
    _, elb, ecs = clients(endpoint)
    groups = {g["TargetGroupArn"]: g["TargetGroupName"] for g in elb.describe_target_groups()["TargetGroups"]}
    arns = list(groups)
    for i in range(0, len(arns), 20):
        for described in elb.describe_tags(ResourceArns=arns[i:i + 20])["TagDescriptions"]:
            for tag in described["Tags"]:
                if tag["Key"] == "envpack:revision":
                    groups[described["ResourceArn"]] = tag["Value"]
    listeners = []
    for listener in elb.describe_listeners(LoadBalancerArn=load_balancer)["Listeners"]:
        forward = {}
        for action in listener["DefaultActions"]:
            if action["Type"] == "forward":
                for group in action.get("ForwardConfig", {}).get("TargetGroups", []):
                    forward[groups.get(group["TargetGroupArn"], group["TargetGroupArn"])] = group.get("Weight", 1)
        listeners.append({"port": listener["Port"], "forward": forward,
                          "types": [a["Type"] for a in listener["DefaultActions"]]})
    def revision_of(definition_arn):
        described = ecs.describe_task_definition(taskDefinition=definition_arn, include=["TAGS"])
        tags = {t["key"]: t["value"] for t in described.get("tags", [])}
        return tags.get("envpack:revision", definition_arn)

    services = ecs.list_services(cluster=cluster)["serviceArns"]
    task_sets = []
    for service in services:
        for task_set in ecs.describe_task_sets(cluster=cluster, service=service)["taskSets"]:
            revisions = [groups.get(lb["targetGroupArn"], lb["targetGroupArn"]) for lb in task_set.get("loadBalancers", [])]
            task_sets.append({"service": service.rsplit("/", 1)[-1], "revision": ",".join(revisions),
                              "scale": task_set["scale"]["value"], "status": task_set["status"]})
    arns = []
    for status in ("ACTIVE", "INACTIVE"):
        paginator = ecs.get_paginator("list_task_definitions")
        for page in paginator.paginate(status=status):
            arns.extend((status, arn) for arn in page["taskDefinitionArns"])
    definitions = sorted(revision_of(arn) for status, arn in arns if status == "ACTIVE")
    print(json.dumps({
        "listeners": sorted(listeners, key=lambda l: l["port"]),
        "task_sets": task_sets,
        "target_groups": sorted(groups.values()),
        "task_definitions": definitions,
        # The ACTIVE registrations: "family:revision".
        "registrations": sorted(arn.rsplit("/", 1)[-1] for status, arn in arns if status == "ACTIVE"),
        # Deregistered task definitions: registered once, released since.
        "deregistered": sum(1 for status, _ in arns if status == "INACTIVE"),
        "services": [s.rsplit("/", 1)[-1] for s in services],
    }))


if __name__ == "__main__":
    if len(sys.argv) in (4, 5) and sys.argv[1] == "create":
        create(*sys.argv[2:])
    elif len(sys.argv) == 5 and sys.argv[1] == "inspect":
        inspect(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        sys.exit(__doc__)
