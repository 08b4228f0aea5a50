#!/usr/bin/env python3
"""KafkaAdminClient (kafka-python) against Sluice: create topics (one with configs, one invalid), describe their
configs, add partitions, delete a topic, and print one JSON summary of what the broker answered.
Usage: kafka_python_admin.py HOST:PORT"""
import json
import sys

from kafka import KafkaAdminClient
from kafka.admin import ConfigResource, ConfigResourceType
from kafka.errors import KafkaError

bootstrap = sys.argv[1]
admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="admin-test")
out = {}


def error_name(call):
    try:
        call()
        return "NONE"
    except KafkaError as e:
        return type(e).__name__


admin.create_topics({"audit": {"num_partitions": 2, "replication_factor": 1,
                               "configs": {"retention.ms": "3600000", "cleanup.policy": "delete"}},
                     "metrics": {"num_partitions": 1, "replication_factor": 1}})
out["create_again"] = error_name(lambda: admin.create_topics({"audit": {"num_partitions": 2, "replication_factor": 1}}))
out["create_compacted"] = error_name(lambda: admin.create_topics({"bad": {"num_partitions": 1, "replication_factor": 1,
                                                                             "configs": {"cleanup.policy": "compact"}}}))
out["create_unknown_config"] = error_name(lambda: admin.create_topics({"bad": {"num_partitions": 1, "replication_factor": 1,
                                                                                  "configs": {"no.such.setting": "1"}}}))
out["create_replicated"] = error_name(lambda: admin.create_topics({"bad": {"num_partitions": 1, "replication_factor": 3}}))
out["create_bad_name"] = error_name(lambda: admin.create_topics({"no way": {"num_partitions": 1, "replication_factor": 1}}))

described = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, "audit")], config_filter="All")
out["configs"] = described
# kafka-python reports a resource's error as an empty config map rather than raising.
out["describe_missing"] = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, "nope")])

admin.create_partitions({"audit": 4})
out["shrink"] = error_name(lambda: admin.create_partitions({"audit": 2}))
out["partitions_after"] = {t["name"]: len(t["partitions"]) for t in admin.describe_topics(["audit"])}

admin.delete_topics(["metrics"])
out["delete_missing"] = error_name(lambda: admin.delete_topics(["metrics"]))
out["topics"] = sorted(admin.list_topics())
admin.close()
print(json.dumps(out, default=str))
