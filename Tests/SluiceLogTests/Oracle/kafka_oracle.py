#!/usr/bin/env python3
"""An independent oracle for Sluice's on-disk format, built on kafka-python's record parser.

  kafka_oracle.py decode FILE...      print every batch of each segment file as one JSON line (CRC checked)
  kafka_oracle.py build SPEC OUT      build batches from a JSON spec with DefaultRecordBatchBuilder into OUT

Bytes travel as hex strings; null stays null.
"""
import json
import struct
import sys

from kafka.record import MemoryRecords
from kafka.record.default_records import DefaultRecordBatchBuilder


def hexify(value):
    return None if value is None else bytes(value).hex()


def decode(paths):
    for path in paths:
        with open(path, "rb") as handle:
            data = handle.read()
        records = MemoryRecords(data)
        while records.has_next():
            batch = records.next_batch()
            if batch is None:
                break
            out = {
                "file": path,
                "base_offset": batch.base_offset,
                "last_offset_delta": batch.last_offset_delta,
                "magic": batch.magic,
                "crc": batch.crc,
                "crc_valid": batch.validate_crc(),
                "compression_type": batch.compression_type,
                "producer_id": batch.producer_id,
                "producer_epoch": batch.producer_epoch,
                "base_sequence": batch.base_sequence,
                "records_count": batch.records_count,
                "is_transactional": batch.is_transactional,
                "is_control_batch": batch.is_control_batch,
                "first_timestamp": batch.first_timestamp,
                "max_timestamp": batch.max_timestamp,
                "records": [],
            }
            for record in batch:
                out["records"].append({
                    "offset": record.offset,
                    "timestamp": record.timestamp,
                    "key": hexify(record.key),
                    "value": hexify(record.value),
                    "headers": [[k, hexify(v)] for k, v in record.headers],
                })
                if batch.is_control_batch:
                    # kafka-python's ControlRecord parses the marker's key (version, type).
                    out["records"][-1]["control"] = {"version": record.version, "commit": record.commit, "abort": record.abort}
            print(json.dumps(out, sort_keys=True))


def build(spec_path, out_path):
    with open(spec_path) as handle:
        spec = json.load(handle)
    output = bytearray()
    for batch in spec["batches"]:
        builder = DefaultRecordBatchBuilder(
            magic=2, compression_type=batch["compression"], is_transactional=False,
            producer_id=batch.get("producer_id", -1), producer_epoch=batch.get("producer_epoch", -1),
            base_sequence=batch.get("base_sequence", -1), batch_size=1 << 30)
        for index, record in enumerate(batch["records"]):
            key = None if record.get("key") is None else bytes.fromhex(record["key"])
            value = None if record.get("value") is None else bytes.fromhex(record["value"])
            headers = [(k, None if v is None else bytes.fromhex(v)) for k, v in record["headers"]]
            builder.append(index, timestamp=record["timestamp"], key=key, value=value, headers=headers)
        built = builder.build()
        struct.pack_into(">q", built, 0, batch["base_offset"])
        output += built
    with open(out_path, "wb") as handle:
        handle.write(output)


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "decode":
        decode(sys.argv[2:])
    elif len(sys.argv) == 4 and sys.argv[1] == "build":
        build(sys.argv[2], sys.argv[3])
    else:
        sys.stderr.write(__doc__)
        sys.exit(2)
