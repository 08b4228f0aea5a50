#!/usr/bin/env python3
"""Writes dashboards/sluice.json, the Grafana dashboard for Sluice, from the panel list below.

    python3 dashboards/generate.py          # rewrite sluice.json
    python3 dashboards/generate.py --check  # exit 1 if sluice.json is not what this script writes

Every expression uses only metric names from the README's metrics table; the test suite runs each one against
a real Prometheus scraping an agent that ran the example workload, and fails if one returns nothing.
"""
import json
import os
import sys

RATE = "$__rate_interval"
T = 'topic=~"$topic"'
G = 'group=~"$group"'
S = 'subscription=~"$subscription"'
ST = 'saga_type=~"$saga_type"'
J = 'job=~"$job"'


def q(expr, legend):
    return {"expr": expr, "legendFormat": legend}


# (row title, what the row answers, [(panel title, unit, kind, [queries], description)])
ROWS = [
    ("Publishing", "How much is published, how fast it is acknowledged, and what batching and compression do.", [
        ("Events published / s", "ops", "timeseries",
         [q(f'sum by (topic, status) (rate(sluice_events_published_total{{{T},{J}}}[{RATE}]))', "{{topic}} {{status}}")],
         "Events received for publishing, by outcome (written, duplicate, rejected, failed)."),
        ("Publish latency (p50, p99)", "s", "timeseries",
         [q(f'histogram_quantile(0.5, sum by (le, acks) (rate(sluice_publish_duration_seconds_bucket{{{J}}}[{RATE}])))', "p50 acks={{acks}}"),
          q(f'histogram_quantile(0.99, sum by (le, acks) (rate(sluice_publish_duration_seconds_bucket{{{J}}}[{RATE}])))', "p99 acks={{acks}}")],
         "From receiving a publish request to acknowledging it; acks=all includes the fsync."),
        ("Batch size (median bytes, records)", "bytes", "timeseries",
         [q(f'histogram_quantile(0.5, sum by (le) (rate(sluice_producer_batch_bytes_bucket{{{J}}}[{RATE}])))', "stored bytes"),
          q(f'histogram_quantile(0.5, sum by (le) (rate(sluice_producer_batch_records_bucket{{{J}}}[{RATE}])))', "records")],
         "What linger.ms and batch.size produce: bigger batches compress better and cost fewer writes."),
        ("Compression ratio", "none", "timeseries",
         [q(f'sluice_producer_compression_ratio{{{T},{J}}}', "{{topic}}")],
         "Uncompressed ÷ stored bytes since start (compression.type, compression.level)."),
        ("Producer buffer", "bytes", "timeseries",
         [q(f'sluice_producer_buffer_bytes{{{J}}}', "buffered"), q(f'sluice_producer_buffer_memory_bytes{{{J}}}', "buffer.memory"),
          q(f'rate(sluice_producer_buffer_full_total{{{J}}}[{RATE}])', "refused / s (429)")],
         "Accepted bytes not yet written, against buffer.memory; refusals mean producers must slow down."),
        ("Idempotence window", "short", "timeseries",
         [q(f'sluice_producer_idempotence_window_events{{{J}}}', "remembered"),
          q(f'sluice_producer_idempotence_window_max_events{{{J}}}', "idempotence.window.max.events"),
          q(f'rate(sluice_producer_idempotence_evictions_total{{{J}}}[{RATE}])', "forgotten early / s")],
         "Events remembered for deduplication by source and id, against the bound; events forgotten before idempotence.window.ms would be written again if re-sent."),
        ("Tuning in effect", "short", "table",
         [q(f'sluice_producer_config_info{{{J}}}', "producer"), q(f'sluice_consumer_config_info{{{J}}}', "consumer"),
          q(f'sluice_producer_linger_seconds{{{J}}}', "linger.ms (s)"), q(f'sluice_producer_batch_size_bytes{{{J}}}', "batch.size"),
          q(f'sluice_producer_compression_level{{{J}}}', "compression.level"), q(f'sluice_producer_max_in_flight{{{J}}}', "max.in.flight"),
          q(f'sluice_consumer_max_poll_records{{{J}}}', "max.poll.records"), q(f'sluice_consumer_fetch_max_wait_seconds{{{J}}}', "fetch.max.wait (s)")],
         "The producer and consumer settings the agent runs with, next to their effect above."),
    ]),
    ("Schemas and versions", "Whether published events match their schemas, and which old versions are still being upcast.", [
        ("Schema checks / s by result", "ops", "timeseries",
         [q(f'sum by (topic, type, result) (rate(sluice_schema_validations_total{{{T},{J}}}[{RATE}]))', "{{topic}} {{type}} {{result}}")],
         "Published events checked against their schema: valid, invalid, unknown_version, not_json. With enforce the others were refused (400 or INVALID_RECORD)."),
        ("Schema rejections (1h)", "short", "timeseries",
         [q(f'sum by (topic, type, version) (increase(sluice_schema_validations_total{{{T},result!="valid",{J}}}[1h]))', "{{topic}} {{type}} {{version}}")],
         "Events that failed their schema in the last hour, by type and version: a producer to fix."),
        ("Events upcast / s", "ops", "timeseries",
         [q(f'sum by (type, from, to) (rate(sluice_events_upcast_total{{{J}}}[{RATE}]))', "{{type}} {{from}} → {{to}}")],
         "Events handed to subscribers and readers as a later version than they were published as: producers still on old versions."),
    ]),
    ("Partitions", "Whether each topic has the partitions its throughput and consumers need.", [
        ("Partitions vs recommended", "short", "timeseries",
         [q(f'sluice_topic_partitions{{{T},{J}}}', "{{topic}} partitions"), q(f'sluice_topic_partitions_recommended{{{T},{J}}}', "{{topic}} recommended")],
         "The live recommendation from the 1m/5m produce rate, partition.throughput.bytes and the largest consumer group."),
        ("Produce rate", "Bps", "timeseries",
         [q(f'sluice_topic_produce_bytes_per_second{{{T},window="1m",{J}}}', "{{topic}}")], "Mean bytes per second over the last minute."),
        ("Log size", "bytes", "timeseries",
         [q(f'sum by (topic) (sluice_partition_size_bytes{{{T},{J}}})', "{{topic}}")], "Bytes on disk per topic (retention keeps it bounded)."),
    ]),
    ("Consumer lag", "How far behind each group is, in records and in time, and whether it is moving.", [
        ("Lag (records)", "short", "timeseries",
         [q(f'sum by (group) (sluice_consumer_group_lag_sum{{{G},{J}}})', "{{group}}")], "Records not yet consumed."),
        ("Lag (seconds)", "s", "timeseries",
         [q(f'max by (group) (sluice_consumer_group_lag_seconds_max{{{G},{J}}})', "{{group}}")],
         "Age of the oldest unconsumed record: the number an SLO is written against."),
        ("Status", "short", "stat",
         [q(f'sluice_consumer_group_status{{{G},{J}}}', "{{group}}")], "0 OK, 1 WARN, 2 STALL, 3 STOP, 4 ERR (lag over its SLO)."),
        ("Commit age", "s", "timeseries",
         [q(f'max by (group) (sluice_consumer_group_commit_age_seconds{{{G},{J}}})', "{{group}}")], "Seconds since the group last committed."),
        ("Members and rebalances", "short", "timeseries",
         [q(f'sluice_consumer_group_members{{{G},{J}}}', "{{group}} members"),
          q(f'sum by (group) (increase(sluice_consumer_group_rebalances_total{{{G},{J}}}[1h]))', "{{group}} rebalances (1h)")],
         "Members now, and rebalances in the last hour."),
        ("Expired before read", "short", "timeseries",
         [q(f'sum by (group) (sluice_consumer_group_expired_records{{{G},{J}}})', "{{group}}")], "Records retention deleted before the group read them: data loss for that group."),
    ]),
    ("Dead letters", "What fails, how much is waiting, and what replays did.", [
        ("DLQ inflow / s", "ops", "timeseries",
         [q(f'sum by (topic, error_type) (rate(sluice_dlq_events_total{{{T},{J}}}[{RATE}]))', "{{topic}} {{error_type}}")],
         "Events dead-lettered, by the original topic and error type."),
        ("DLQ depth", "short", "timeseries",
         [q(f'sluice_dlq_depth{{{J}}}', "{{dlq_topic}}")], "Unresolved dead letters."),
        ("Oldest dead letter", "s", "timeseries",
         [q(f'sluice_dlq_oldest_age_seconds{{{J}}}', "{{dlq_topic}}")], "Age of the oldest unresolved dead letter."),
        ("Replays and poison (1h)", "short", "timeseries",
         [q(f'sum by (dlq_topic, outcome) (increase(sluice_dlq_replayed_total{{{J}}}[1h]))', "{{dlq_topic}} {{outcome}}"),
          q(f'sum by (topic) (increase(sluice_poison_events_total{{{J}}}[1h]))', "{{topic}} poisoned")],
         "Replayed letters by outcome, and events parked in <topic>.poison after max_replays."),
    ]),
    ("Push delivery", "How fast the app handles events, how often it fails, and whether it is reachable.", [
        ("App handling time (p50, p99)", "s", "timeseries",
         [q(f'histogram_quantile(0.5, sum by (le, subscription) (rate(sluice_event_processing_duration_seconds_bucket{{{S},{J}}}[{RATE}])))', "p50 {{subscription}}"),
          q(f'histogram_quantile(0.99, sum by (le, subscription) (rate(sluice_event_processing_duration_seconds_bucket{{{S},{J}}}[{RATE}])))', "p99 {{subscription}}")],
         "The app's time to accept an event."),
        ("Attempts / s by outcome", "ops", "timeseries",
         [q(f'sum by (subscription, outcome) (rate(sluice_delivery_attempts_total{{{S},{J}}}[{RATE}]))', "{{subscription}} {{outcome}}"),
          q(f'sum by (subscription) (rate(sluice_delivery_retries_total{{{S},{J}}}[{RATE}]))', "{{subscription}} retries")],
         "delivered, dropped, rejected, http_error, timeout, unavailable; and retries."),
        ("In flight and oldest pending", "short", "timeseries",
         [q(f'sluice_delivery_in_flight{{{S},{J}}}', "{{subscription}} in flight"),
          q(f'sluice_delivery_oldest_pending_age_seconds{{{S},{J}}}', "{{subscription}} oldest (s)")],
         "Events taken and not finished; the age of the oldest."),
        ("Circuit breakers", "short", "timeseries",
         [q(f'sluice_circuit_breaker_state{{{S},{J}}} == 1', "{{subscription}} {{state}}"),
          q(f'sum by (subscription, state) (increase(sluice_circuit_breaker_transitions_total{{{S},{J}}}[1h]))', "{{subscription}} → {{state}} (1h)")],
         "The current state of each breaker, and how often it changed."),
        ("Rewinds (projection rebuilds)", "short", "timeseries",
         [q(f'sluice_subscription_rewind_remaining_events{{{S},{J}}}', "{{subscription}} remaining"),
          q(f'sum by (subscription) (increase(sluice_subscription_rewinds_total{{{S},{J}}}[1h]))', "{{subscription}} rewinds (1h)")],
         "Events a rewound subscription has still to deliver again, and how often subscriptions were rewound."),
    ]),
    ("Sagas", "How sagas end, how long they take, and which are stuck.", [
        ("Completions / s by status", "ops", "timeseries",
         [q(f'sum by (saga_type, status) (rate(sluice_saga_completions_total{{{ST},{J}}}[{RATE}]))', "{{saga_type}} {{status}}"),
          q(f'sum by (saga_type) (rate(sluice_saga_started_total{{{ST},{J}}}[{RATE}]))', "{{saga_type}} started")],
         "completed, compensated, failed, timed_out, needs_intervention."),
        ("Saga duration (p50, p95)", "s", "timeseries",
         [q(f'histogram_quantile(0.5, sum by (le, saga_type) (rate(sluice_saga_duration_seconds_bucket{{{ST},{J}}}[{RATE}])))', "p50 {{saga_type}}"),
          q(f'histogram_quantile(0.95, sum by (le, saga_type) (rate(sluice_saga_duration_seconds_bucket{{{ST},{J}}}[{RATE}])))', "p95 {{saga_type}}")],
         "Start to final status."),
        ("Step duration (p95)", "s", "timeseries",
         [q(f'histogram_quantile(0.95, sum by (le, saga_type, step) (rate(sluice_saga_step_duration_seconds_bucket{{{ST},{J}}}[{RATE}])))', "{{saga_type}} {{step}}")],
         "Command to reply, per step: where the time goes."),
        ("In flight and oldest", "short", "timeseries",
         [q(f'sluice_sagas_in_flight{{{ST},{J}}}', "{{saga_type}} in flight"),
          q(f'sluice_saga_oldest_in_flight_age_seconds{{{ST},{J}}}', "{{saga_type}} oldest (s)")],
         "A growing oldest age is a stuck saga."),
        ("Compensations (1h)", "short", "timeseries",
         [q(f'sum by (saga_type, step, outcome) (increase(sluice_saga_compensations_total{{{ST},{J}}}[1h]))', "{{saga_type}} {{step}} {{outcome}}")],
         "Compensation attempts by outcome."),
    ]),
    ("Traces", "Which journeys are still moving, which are stuck, and how long they take end to end.", [
        ("Traces in flight and stale", "short", "timeseries",
         [q(f'sluice_traces_in_flight{{{J}}}', "{{instance}} in flight"), q(f'sluice_traces_stale{{{J}}}', "{{instance}} stale")],
         "In flight: an event awaits a delivery or a saga is not final. Stale: in flight without progress for trace.stale.ms (sluice traces --status stale)."),
        ("Trace duration (p50, p95)", "s", "timeseries",
         [q(f'histogram_quantile(0.5, sum by (le, event_type) (rate(sluice_trace_duration_seconds_bucket{{{J}}}[{RATE}])))', "p50 {{event_type}}"),
          q(f'histogram_quantile(0.95, sum by (le, event_type) (rate(sluice_trace_duration_seconds_bucket{{{J}}}[{RATE}])))', "p95 {{event_type}}")],
         "First hop to last of completed traces, by the type of the first event."),
        ("Trace index", "short", "timeseries",
         [q(f'sluice_trace_index_traces{{{J}}}', "{{instance}} traces"), q(f'sluice_trace_index_bytes{{{J}}} / 1048576', "{{instance}} hop MiB")],
         "Traces held and the MiB of their hops, against trace.max.traces and trace.max.bytes."),
    ]),
    ("Agent", "Is it up, and what does it cost.", [
        ("Up", "short", "stat", [q(f'up{{{J}}}', "{{instance}}")], "1 when Prometheus can scrape the agent."),
        ("Resident memory", "bytes", "timeseries", [q(f'process_resident_memory_bytes{{{J}}}', "{{instance}}")], "RSS of the agent."),
        ("CPU", "percentunit", "timeseries", [q(f'rate(process_cpu_seconds_total{{{J}}}[{RATE}])', "{{instance}}")], "Cores used."),
        ("Open files", "short", "timeseries",
         [q(f'process_open_fds{{{J}}}', "open"), q(f'process_max_fds{{{J}}}', "limit")], "File descriptors (segments, sockets)."),
        ("API requests / s", "reqps", "timeseries",
         [q(f'sum by (route, status) (rate(sluice_http_requests_total{{{J}}}[{RATE}]))', "{{route}} {{status}}"),
          q(f'rate(sluice_log_lines_dropped_total{{{J}}}[{RATE}])', "log lines dropped / s")],
         "By route template and status; and log lines dropped because stdout stopped being read."),
    ]),
]


def variable(name, label, query):
    return {
        "name": name, "label": label, "type": "query", "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "query": {"query": query, "refId": f"{name}-values"}, "definition": query, "refresh": 2, "includeAll": True,
        "multi": True, "allValue": ".*", "current": {"selected": True, "text": ["All"], "value": ["$__all"]}, "sort": 1,
    }


def dashboard():
    panels = []
    panel_id = 1
    y = 0
    for title, description, items in ROWS:
        panels.append({"id": panel_id, "type": "row", "title": title, "description": description, "collapsed": False,
                       "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}, "panels": []})
        panel_id += 1
        y += 1
        for index, (panel_title, unit, kind, queries, help_text) in enumerate(items):
            width = 8
            panel = {
                "id": panel_id, "type": kind, "title": panel_title, "description": help_text,
                "datasource": {"type": "prometheus", "uid": "${datasource}"},
                "gridPos": {"h": 8, "w": width, "x": (index % 3) * width, "y": y + (index // 3) * 8},
                "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
                "targets": [dict(query, refId=chr(ord("A") + n), datasource={"type": "prometheus", "uid": "${datasource}"})
                            for n, query in enumerate(queries)],
            }
            if kind == "table":
                panel["targets"] = [dict(t, format="table", instant=True) for t in panel["targets"]]
            panels.append(panel)
            panel_id += 1
        y += ((len(items) + 2) // 3) * 8
    return {
        "uid": "sluice-overview", "title": "Sluice", "description": "The Sluice event-broker sidecar: publishing, partitions, lag, dead letters, delivery, sagas and the agent.",
        "tags": ["sluice", "kafka", "events"], "timezone": "browser", "schemaVersion": 39, "version": 1, "editable": True,
        "time": {"from": "now-1h", "to": "now"}, "refresh": "30s", "graphTooltip": 1,
        "templating": {"list": [
            {"name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus", "current": {}, "hide": 0},
            variable("job", "Job", "label_values(sluice_producer_config_info, job)"),
            variable("topic", "Topic", "label_values(sluice_topic_partitions, topic)"),
            variable("group", "Group", "label_values(sluice_consumer_group_members, group)"),
            variable("subscription", "Subscription", "label_values(sluice_delivery_in_flight, subscription)"),
            variable("saga_type", "Saga type", "label_values(sluice_sagas_in_flight, saga_type)"),
        ]},
        "annotations": {"list": []},
        "panels": panels,
    }


def main():
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sluice.json")
    text = json.dumps(dashboard(), indent=2, ensure_ascii=False) + "\n"
    if "--check" in sys.argv:
        current = open(path, encoding="utf-8").read() if os.path.exists(path) else ""
        if current != text:
            sys.exit("dashboards/sluice.json is out of date: run python3 dashboards/generate.py")
        return
    open(path, "w", encoding="utf-8").write(text)


if __name__ == "__main__":
    main()
