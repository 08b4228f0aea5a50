import Foundation
@testable import SluiceBroker
import SluiceLog
import Testing

@Suite("CloudEvents")
struct CloudEventTests {
    @Test("structured events become Kafka-binding records and come back unchanged")
    func recordRoundTrip() throws {
        let object: [String: Any] = [
            "specversion": "1.0", "id": "e-1", "source": "/orders", "type": "order.created", "time": "2026-11-22T16:00:00.123Z",
            "subject": "o-9", "dataschema": "https://schemas.example/order/v2", "partitionkey": "cust-7", "correlationid": "c-1",
            "causationid": "cmd-3", "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "priority": 5, "urgent": true,
            "data": ["total": 42, "items": ["a", "b"]],
        ]
        let event = try CloudEvent.parse(jsonObject: object)
        #expect(event.extensions["priority"] == "5")
        #expect(event.extensions["urgent"] == "true")
        let record = event.record(timestamp: 1000)
        #expect(record.key == Array("cust-7".utf8))
        #expect(record.headers.contains(RecordHeader(key: "ce_id", value: Array("e-1".utf8))))
        #expect(record.headers.contains(RecordHeader(key: "ce_correlationid", value: Array("c-1".utf8))))
        let back = try #require(CloudEvent(record: record))
        #expect(back == event)
        let json = back.jsonObject()
        #expect((json["data"] as? [String: Any])?["total"] as? Int == 42)
        #expect(json["partitionkey"] as? String == "cust-7")
    }

    @Test("an event written straight into a batch makes the same bytes as its record does, for varied events")
    func directEncodingMatchesRecords() throws {
        var events: [CloudEvent] = []
        for n in 0..<200 {
            var event = CloudEvent(id: "e-\(n)-" + String(repeating: "x", count: n % 40), source: n % 3 == 0 ? "/s" : "/orders/service-\(n)",
                                   type: "order.created", data: n % 7 == 0 ? nil : Array(#"{"n":\#(n),"text":"héllo"}"#.utf8),
                                   datacontenttype: n % 5 == 0 ? nil : "application/json")
            if n % 2 == 0 { event.time = "2026-12-06T10:00:00.\(n % 10)Z" }
            if n % 4 == 1 { event.subject = "subject-\(n)" }
            if n % 6 == 2 { event.dataschema = "https://schemas.example/\(n)" }
            let names = ["partitionkey", "correlationid", "causationid", "traceparent", "zeta", "alpha", "tenant"]
            for (k, name) in names.enumerated() where (n >> k) & 1 == 1 {
                event.extensions[name] = name == "traceparent" ? "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01" : "\(name)-\(n)-é"
            }
            events.append(event)
        }
        var tails = RecordTails()
        var ends: [Int] = []
        for event in events {
            event.writeRecordTail(into: &tails)
            ends.append(tails.count)
        }
        let bytes = tails.bytes
        let encoded = zip([0] + ends.dropLast(), ends).enumerated().map { EncodedRecord(timestamp: 1_700_000_000_000 + Int64($0.offset), tail: bytes[$0.element.0..<$0.element.1]) }
        let records = events.enumerated().map { $0.element.record(timestamp: 1_700_000_000_000 + Int64($0.offset)) }
        for compression in [Compression.none, Compression(codec: .gzip)] {
            #expect(try RecordBatch.encode(encoded: encoded, compression: compression) == RecordBatch.encode(records, compression: compression))
        }
        #expect(try RecordBatch.encode(encoded: records.map(EncodedRecord.init)) == RecordBatch.encode(records))
        let decoded = try RecordBatch.decode(RecordBatch.encode(encoded: encoded)).records
        #expect(decoded.map { CloudEvent(record: $0) } == events)
    }

    @Test("a structured-mode record (the whole event as the value) is an event; a plain or broken one is not")
    func structuredRecords() throws {
        let value = Array(#"{"specversion":"1.0","id":"s-1","source":"/py","type":"order.paid","data":{"paid":true}}"#.utf8)
        let header = { (type: String) in [RecordHeader(key: "content-type", value: Array(type.utf8))] }
        let event = try #require(CloudEvent(record: Record(timestamp: 0, key: Array("cust-9".utf8), value: value,
                                                           headers: header("Application/CloudEvents+JSON; charset=UTF-8"))))
        #expect(event.id == "s-1" && event.type == "order.paid" && event.source == "/py")
        #expect(event.partitionKey == "cust-9")
        #expect((event.jsonObject()["data"] as? [String: Any])?["paid"] as? Bool == true)
        // The event's own partitionkey wins over the record key.
        let keyed = Array(#"{"specversion":"1.0","id":"s-2","source":"/py","type":"t","partitionkey":"own"}"#.utf8)
        #expect(CloudEvent(record: Record(timestamp: 0, key: Array("k".utf8), value: keyed, headers: header("application/cloudevents+json")))?.partitionKey == "own")
        // Plain JSON, a structured value missing an attribute, and no content type: plain records.
        #expect(CloudEvent(record: Record(timestamp: 0, value: value, headers: header("application/json"))) == nil)
        let broken = Array(#"{"specversion":"1.0","id":"s-3","type":"t"}"#.utf8)
        #expect(CloudEvent(record: Record(timestamp: 0, value: broken, headers: header("application/cloudevents+json"))) == nil)
        #expect(CloudEvent(record: Record(timestamp: 0, value: value)) == nil)
    }

    @Test("binary data is kept as bytes and shown as data_base64; text stays text")
    func binaryData() throws {
        let bytes: [UInt8] = [0, 1, 2, 255]
        let event = try CloudEvent.parse(binaryHeaders: [("ce-specversion", "1.0"), ("ce-id", "b1"), ("ce-source", "/s"), ("ce-type", "t"),
                                                         ("Content-Type", "application/octet-stream"), ("ce-partitionkey", "k%20y")], body: bytes)
        #expect(event.data == bytes)
        #expect(event.partitionKey == "k y")
        #expect(event.jsonObject()["data_base64"] as? String == "AAEC/w==")
        let text = try CloudEvent.parse(jsonObject: ["specversion": "1.0", "id": "x", "source": "/s", "type": "t", "datacontenttype": "text/plain", "data": "héllo"])
        #expect(text.data == Array("héllo".utf8))
        #expect(CloudEvent(record: text.record(timestamp: 0))?.jsonObject()["data"] as? String == "héllo")
    }

    @Test("invalid events are rejected naming the attribute", arguments: [
        (["id": "1", "source": "/s", "type": "t"], "specversion", "required attribute 'specversion' is missing"),
        (["specversion": "0.3", "id": "1", "source": "/s", "type": "t"], "specversion", "accepts CloudEvents 1.0"),
        (["specversion": "1.0", "source": "/s", "type": "t"], "id", "required attribute 'id' is missing"),
        (["specversion": "1.0", "id": "", "source": "/s", "type": "t"], "id", "must be a non-empty string"),
        (["specversion": "1.0", "id": "1", "source": 5, "type": "t"], "source", "must be a non-empty string"),
        (["specversion": "1.0", "id": "1", "source": "/s"], "type", "required attribute 'type' is missing"),
        (["specversion": "1.0", "id": "1", "source": "/s", "type": "t", "time": "yesterday"], "time", "not an RFC 3339 timestamp"),
        (["specversion": "1.0", "id": "1", "source": "/s", "type": "t", "Bad_Name": "x"], "Bad_Name", "attribute name 'Bad_Name' is invalid"),
        (["specversion": "1.0", "id": "1", "source": "/s", "type": "t", "data": 1, "data_base64": "AA=="], "data", "cannot both be present"),
        (["specversion": "1.0", "id": "1", "source": "/s", "type": "t", "data_base64": "***"], "data_base64", "must be a base64 string"),
        (["specversion": "1.0", "id": "1", "source": "/s", "type": "t", "traceparent": "nope"], "traceparent", "is not a W3C trace context"),
        (["specversion": "1.0", "id": "1", "source": "/s", "type": "t", "partitionkey": ""], "partitionkey", "must not be empty"),
        (["specversion": "1.0", "id": "1", "source": "/s", "type": "t", "ext": ["nested": 1]], "ext", "must be a string, number or boolean"),
    ] as [([String: any Sendable], String, String)])
    func invalid(object: [String: any Sendable], attribute: String, message: String) {
        let error = #expect(throws: BrokerError.self) { try CloudEvent.parse(jsonObject: object as [String: Any]) }
        #expect(error?.status == 400)
        #expect(error?.attribute == attribute)
        #expect(error?.message.contains(message) == true, "got \(error?.message ?? "-")")
    }

    @Test("binary mode needs ce-specversion, and JSON content must parse")
    func binaryErrors() {
        var error = #expect(throws: BrokerError.self) { try CloudEvent.parse(binaryHeaders: [("ce-id", "1")], body: []) }
        #expect(error?.attribute == "specversion")
        error = #expect(throws: BrokerError.self) {
            try CloudEvent.parse(binaryHeaders: [("ce-specversion", "1.0"), ("ce-id", "1"), ("ce-source", "/s"), ("ce-type", "t"), ("content-type", "application/json")],
                                 body: Array("{not json".utf8))
        }
        #expect(error?.message.contains("does not parse as JSON") == true)
    }
}
