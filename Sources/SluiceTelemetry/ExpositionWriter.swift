/// Writes Prometheus text exposition (format 0.0.4) directly, for families rendered in bulk by a background
/// pass rather than kept as registry handles.
public struct ExpositionWriter {
    public private(set) var bytes: [UInt8]

    public init(capacity: Int = 4096) {
        bytes = []
        bytes.reserveCapacity(capacity)
    }

    /// `# HELP` and `# TYPE` lines of a family.
    public mutating func header(_ family: MetricFamily, type: String) {
        append("# HELP ")
        append(family.name)
        bytes.append(0x20)
        for byte in family.help.utf8 {
            switch byte {
            case 0x5C: append("\\\\")
            case 0x0A: append("\\n")
            default: bytes.append(byte)
            }
        }
        append("\n# TYPE ")
        append(family.name)
        bytes.append(0x20)
        append(type)
        bytes.append(0x0A)
    }

    /// One sample of `family`, with its label values in the family's label order.
    public mutating func sample(_ family: MetricFamily, _ values: [String], _ value: Double) {
        sample(family.name, names: family.labels, values, value)
    }

    /// One sample; `values` are the values of `names` (the family's label names, in order).
    public mutating func sample(_ name: String, names: [String], _ values: [String], _ value: Double) {
        append(name)
        if !values.isEmpty {
            bytes.append(0x7B)  // {
            for (index, (label, text)) in zip(names, values).enumerated() {
                if index > 0 { bytes.append(0x2C) }
                append(label)
                append("=\"")
                for byte in text.utf8 {
                    switch byte {
                    case 0x5C: append("\\\\")
                    case 0x22: append("\\\"")
                    case 0x0A: append("\\n")
                    default: bytes.append(byte)
                    }
                }
                bytes.append(0x22)
            }
            bytes.append(0x7D)
        }
        bytes.append(0x20)
        if value == value.rounded(), abs(value) < 1e15 {
            append(String(Int64(value)))
        } else if value.isNaN {
            append("NaN")
        } else if value.isInfinite {
            append(value > 0 ? "+Inf" : "-Inf")
        } else {
            append(String(value))
        }
        bytes.append(0x0A)
    }

    private mutating func append(_ text: String) {
        bytes.append(contentsOf: text.utf8)
    }
}
