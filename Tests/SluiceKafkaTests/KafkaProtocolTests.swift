import Foundation
import NIOCore
import SluiceKafka
import SluiceLog
import SluiceTestSupport
import Testing

/// A blocking TCP client that speaks raw Kafka frames, for the cases real clients never send.
final class RawKafkaConnection {
    let fd: Int32

    init(_ address: String, timeoutSeconds: Int = 10) throws {
        let parts = address.split(separator: ":")
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(parts[1])!).bigEndian
        addr.sin_addr.s_addr = inet_addr(String(parts[0]))
        var timeout = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        let connected = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { throw POSIXError(.ECONNREFUSED) }
    }

    deinit { close(fd) }

    func send(_ bytes: [UInt8]) {
        var sent = 0
        while sent < bytes.count {
            let n = bytes[sent...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { return }
            sent += n
        }
    }

    /// Reads exactly `count` bytes; nil when the peer closed (or the read timed out) first.
    func read(_ count: Int) -> [UInt8]? {
        var out = [UInt8](repeating: 0, count: count)
        var got = 0
        while got < count {
            let n = out[got...].withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { return nil }
            got += n
        }
        return out
    }

    /// One response frame: (correlation id, body after it); nil when the connection closed.
    func response() -> (Int32, [UInt8])? {
        guard let size = read(4) else { return nil }
        let length = Int(Int32(bigEndian: size.withUnsafeBytes { $0.loadUnaligned(as: Int32.self) }))
        guard length >= 4, let frame = read(length) else { return nil }
        return (Int32(bigEndian: frame.withUnsafeBytes { $0.loadUnaligned(as: Int32.self) }), Array(frame[4...]))
    }

    /// True when the peer closed the connection (rather than the read timing out).
    func closedByPeer() -> Bool {
        var byte: UInt8 = 0
        return recv(fd, &byte, 1, 0) == 0
    }
}

/// A request frame: size prefix, header v1, body.
func kafkaFrame(api: Int16, version: Int16, correlation: Int32, clientId: String? = "raw-test", _ body: (inout KafkaWriter) -> Void = { _ in }) -> [UInt8] {
    var w = KafkaWriter()
    w.int16(api)
    w.int16(version)
    w.int32(correlation)
    w.nullableString(clientId)
    body(&w)
    var framed = KafkaWriter()
    framed.int32(Int32(w.buffer.readableBytes))
    var buffer = w.buffer
    framed.buffer.writeBuffer(&buffer)
    return Array(framed.buffer.readableBytesView)
}

func int16(_ bytes: [UInt8], at offset: Int) -> Int16 {
    Int16(bigEndian: bytes[offset..<offset + 2].withUnsafeBytes { $0.loadUnaligned(as: Int16.self) })
}

@Suite(.serialized)
struct KafkaProtocolTests {
    /// The README's API table is the contract ApiVersions answers: the same APIs, keys and version ranges.
    @Test func readmeListsEveryServedAPIAndRange() throws {
        let readme = try String(contentsOfFile: packageRoot + "/README.md", encoding: .utf8)
        var listed: [Int16: (String, ClosedRange<Int16>)] = [:]
        for line in readme.split(separator: "\n") where line.hasPrefix("| ") {
            let cells = line.split(separator: "|").map { $0.trimmingCharacters(in: .whitespaces) }
            guard cells.count >= 2, let open = cells[0].firstIndex(of: "("), cells[0].hasSuffix(")"),
                  let key = Int16(cells[0][cells[0].index(after: open)..<cells[0].index(before: cells[0].endIndex)]) else { continue }
            let bounds = cells[1].split(separator: "–").compactMap { Int16($0) }
            guard let low = bounds.first, let high = bounds.last else { continue }
            listed[key] = (cells[0][..<open].trimmingCharacters(in: .whitespaces), low...high)
        }
        for api in KafkaAPI.allCases {
            #expect(listed[api.rawValue]?.0 == api.description && listed[api.rawValue]?.1 == api.versions,
                    "README lists \(String(describing: listed[api.rawValue])) for \(api) (\(api.rawValue)) \(api.versions)")
        }
        #expect(listed.count == KafkaAPI.allCases.count, "README lists APIs Sluice does not serve: \(listed.keys.sorted())")
    }

    /// ApiVersions of a version Sluice does not serve gets a v0 body with UNSUPPORTED_VERSION and the full list;
    /// a served version lists every API with the ranges of ``KafkaAPI``.
    @Test func apiVersionsAnswersUnknownVersionsWithV0() async throws {
        try await withTemporaryDirectory { dir in
            let agent = try await startServed(dir, [])
            defer { agent.stop() }
            let connection = try RawKafkaConnection(agent.kafka)
            connection.send(kafkaFrame(api: 18, version: 3, correlation: 7) { w in
                // A v3 body is flexible (compact strings, tagged fields); Sluice must not try to parse it.
                w.int8(6); w.int8(0)
            })
            let (correlation, body) = try #require(connection.response())
            #expect(correlation == 7)
            #expect(int16(body, at: 0) == KafkaError.unsupportedVersion.rawValue)
            let count = Int(Int32(bigEndian: body[2..<6].withUnsafeBytes { $0.loadUnaligned(as: Int32.self) }))
            #expect(count == KafkaAPI.allCases.count)
            var served: [Int16: ClosedRange<Int16>] = [:]
            for i in 0..<count {
                let at = 6 + i * 6
                served[int16(body, at: at)] = int16(body, at: at + 2)...int16(body, at: at + 4)
            }
            #expect(served == Dictionary(uniqueKeysWithValues: KafkaAPI.allCases.map { ($0.rawValue, $0.advertisedVersions) }))
            // Produce is listed from v0 as Kafka 4.0 lists it, so that librdkafka compresses (KAFKA-18659).
            #expect(served[KafkaAPI.produce.rawValue] == 0...8)

            // The same connection still works: v2 is served.
            connection.send(kafkaFrame(api: 18, version: 2, correlation: 8))
            let (next, nextBody) = try #require(connection.response())
            #expect(next == 8 && int16(nextBody, at: 0) == 0)

            // Listed is not served: Produce v2 (magic 0/1 message sets) closes the connection, as other
            // versions outside the served range do.
            connection.send(kafkaFrame(api: 0, version: 2, correlation: 9) { w in w.int16(1); w.int32(1000); w.int32(0) })
            #expect(connection.response() == nil && connection.closedByPeer())
        }
    }

    /// Pipelined requests are answered in request order, and acks=0 Produce gets no reply at all.
    @Test func pipelinedRequestsAnswerInOrderAndAcksZeroIsSilent() async throws {
        try await withTemporaryDirectory { dir in
            let agent = try await startServed(dir, ["--num-partitions", "1"])
            defer { agent.stop() }
            let batch = try RecordBatch.encode([Record(timestamp: 1_700_000_000_000, key: nil, value: Array("fire and forget".utf8))])
            func produce(acks: Int16, correlation: Int32) -> [UInt8] {
                kafkaFrame(api: 0, version: 3, correlation: correlation) { w in
                    w.nullableString(nil)
                    w.int16(acks)
                    w.int32(5000)
                    w.array(["quiet"]) { w, topic in
                        w.string(topic)
                        w.array([0]) { w, partition in w.int32(Int32(partition)); w.bytes(batch) }
                    }
                }
            }
            func metadata(_ correlation: Int32) -> [UInt8] {
                kafkaFrame(api: 3, version: 4, correlation: correlation) { w in
                    w.array(["quiet"]) { w, name in w.string(name) }
                    w.bool(true)
                }
            }
            let connection = try RawKafkaConnection(agent.kafka)
            connection.send(metadata(1) + produce(acks: 0, correlation: 2) + produce(acks: 1, correlation: 3)
                            + kafkaFrame(api: 18, version: 0, correlation: 4) + produce(acks: 0, correlation: 5) + metadata(6))
            var seen: [Int32] = []
            for _ in 0..<4 { if let (correlation, _) = connection.response() { seen.append(correlation) } }
            #expect(seen == [1, 3, 4, 6])
            // Both acks=0 batches were stored all the same.
            let read = try await http("GET", agent.base + "/v1/topics/quiet/partitions/0/events?offset=0")
            #expect(read.json["log_end_offset"] as? Int == 3, "\(read.text)")
        }
    }

    /// The listener checks a produced batch once (the log appends it without computing the CRC again), so the
    /// listener's own checks are what stand between a damaged batch and the disk: each gets its error code and
    /// none is stored.
    @Test func damagedBatchesGetTheirErrorCodeAndNothingIsStored() async throws {
        try await withTemporaryDirectory { dir in
            let agent = try await startServed(dir, ["--num-partitions", "1"])
            defer { agent.stop() }
            let good = try RecordBatch.encode((0..<5).map { Record(timestamp: 1_700_000_000_000, key: nil, value: Array("event \($0)".utf8)) })
            func withCRC(_ batch: [UInt8]) -> [UInt8] {
                var batch = batch
                let crc = batch.withUnsafeBytes { CRC32C.checksum(UnsafeRawBufferPointer(rebasing: $0[21...])) }
                withUnsafeBytes(of: crc.bigEndian) { for i in 0..<4 { batch[17 + i] = $0[i] } }
                return batch
            }
            var flippedValue = good
            flippedValue[good.count - 3] ^= 0x01
            var flippedCRC = good
            flippedCRC[17] ^= 0x80
            var codec = good
            codec[22] = 5
            var delta = good
            delta[26] = 9  // lastOffsetDelta 4 → 9 for 5 records
            var trailing = good
            trailing.append(0)
            let cases: [(String, [UInt8], Int16)] = [
                ("a flipped value byte", flippedValue, 2), ("a flipped CRC", flippedCRC, 2),
                ("codec 5, CRC valid", withCRC(codec), 76), ("lastOffsetDelta 9 for 5 records, CRC valid", withCRC(delta), 87),
                ("a byte after the batch", trailing, 87), ("the batch as encoded", good, 0),
            ]
            let connection = try RawKafkaConnection(agent.kafka)
            for (index, (what, batch, expected)) in cases.enumerated() {
                connection.send(kafkaFrame(api: 0, version: 3, correlation: Int32(index)) { w in
                    w.nullableString(nil)
                    w.int16(1)
                    w.int32(5000)
                    w.array(["checked"]) { w, topic in
                        w.string(topic)
                        w.array([0]) { w, partition in w.int32(Int32(partition)); w.bytes(batch) }
                    }
                })
                let answer = try #require(connection.response(), "no answer to \(what)")
                #expect(answer.0 == Int32(index))
                // topics [name "checked", partitions [index, error_code, …]]
                #expect(int16(answer.1, at: 4 + 2 + 7 + 4 + 4) == expected, "\(what)")
            }
            let read = try await http("GET", agent.base + "/v1/topics/checked/partitions/0/events?offset=0")
            #expect(read.json["log_end_offset"] as? Int == 5, "only the good batch is stored: \(read.text)")
        }
    }

    /// Frames Sluice cannot answer close the connection — never a crash, never a hang — and the agent goes on.
    @Test func badFramesCloseTheConnection() async throws {
        try await withTemporaryDirectory { dir in
            let agent = try await startServed(dir, ["--socket-request-max-bytes", "4096"])
            defer { agent.stop() }
            let oversized = try RawKafkaConnection(agent.kafka)
            oversized.send([0, 0, 0x20, 0] + [UInt8](repeating: 0, count: 64))  // 8192 > 4096
            #expect(oversized.closedByPeer())

            let negative = try RawKafkaConnection(agent.kafka)
            negative.send([0xFF, 0xFF, 0xFF, 0xF0])
            #expect(negative.closedByPeer())

            let garbage = try RawKafkaConnection(agent.kafka)
            garbage.send([0, 0, 0, 3, 1, 2, 3])  // a frame too short for a header
            #expect(garbage.closedByPeer())

            let unknownAPI = try RawKafkaConnection(agent.kafka)
            unknownAPI.send(kafkaFrame(api: 999, version: 0, correlation: 1))
            #expect(unknownAPI.closedByPeer())

            let unservedVersion = try RawKafkaConnection(agent.kafka)
            unservedVersion.send(kafkaFrame(api: 3, version: 42, correlation: 1))
            #expect(unservedVersion.closedByPeer())

            let truncated = try RawKafkaConnection(agent.kafka)
            truncated.send(kafkaFrame(api: 3, version: 1, correlation: 1) { w in w.int32(5); w.string("a") })  // 5 names, 1 sent
            #expect(truncated.closedByPeer())

            #expect(try await http("GET", agent.base + "/readyz").status == 200)
            let healthy = try RawKafkaConnection(agent.kafka)
            healthy.send(kafkaFrame(api: 18, version: 1, correlation: 9))
            #expect(healthy.response()?.0 == 9)
            let log = agent.logText()
            #expect(log.contains("socket.request.max.bytes"), "the oversized frame is logged with the setting to raise")
            #expect(log.contains("\"client.address\""))
        }
    }

    /// A Fetch waiting for data holds up only its own connection.
    @Test func longPollingFetchDoesNotStallOtherConnections() async throws {
        try await withTemporaryDirectory { dir in
            let agent = try await startServed(dir, ["--num-partitions", "1"])
            defer { agent.stop() }
            let setup = try RawKafkaConnection(agent.kafka)
            setup.send(kafkaFrame(api: 3, version: 4, correlation: 1) { w in w.array(["idle"]) { w, n in w.string(n) }; w.bool(true) })
            _ = try #require(setup.response())

            let waiting = try RawKafkaConnection(agent.kafka)
            waiting.send(kafkaFrame(api: 1, version: 4, correlation: 2) { w in
                w.int32(-1); w.int32(5000); w.int32(1); w.int32(1 << 20); w.int8(0)
                w.array(["idle"]) { w, name in
                    w.string(name)
                    w.array([0]) { w, p in w.int32(Int32(p)); w.int64(0); w.int32(1 << 20) }
                }
            })
            let started = Date()
            let other = try RawKafkaConnection(agent.kafka)
            other.send(kafkaFrame(api: 18, version: 0, correlation: 3))
            #expect(other.response()?.0 == 3)
            #expect(Date().timeIntervalSince(started) < 4, "another connection waited for the long poll")
            // The poll itself answers (empty) once its wait is over.
            #expect(waiting.response()?.0 == 2)
        }
    }
}
