import Foundation
import SluiceSchema
@testable import SluiceSaga
import SluiceTestSupport
import Testing

@Suite("Saga templates and definitions")
struct SagaUnitTests {
    @Test("a template that is one reference keeps the value's JSON type; references inside text become text; missing ones are null or empty")
    func templates() throws {
        let context = JSONValue.object([
            "saga": .object(["id": .string("s-1"), "type": .string("order")]),
            "data": .object(["total": .number(42), "items": .array([.string("a")])]),
            "steps": .object(["payment": .object(["payment_id": .string("pay-9")])]),
        ])
        let template = JSONValue.object([
            "amount": .string("${data.total}"), "items": .string("${ data.items }"), "note": .string("order ${saga.id} paid by ${steps.payment.payment_id}"),
            "missing": .string("${data.nothing}"), "gap": .string("[${data.nothing}]"), "plain": .string("as is"), "nested": .array([.string("${saga.type}")]),
        ])
        let rendered = Template.render(template, context: context)
        #expect(rendered == .object([
            "amount": .number(42), "items": .array([.string("a")]), "note": .string("order s-1 paid by pay-9"),
            "missing": .null, "gap": .string("[]"), "plain": .string("as is"), "nested": .array([.string("order")]),
        ]))
        #expect(Template.references(in: "${a.b} and ${ c }") == ["a.b", "c"])
    }

    @Test("definitions load from a file; each mistake is refused with its file, line and what to write instead")
    func definitions() async throws {
        try await withTemporaryDirectory { dir in
            let good = dir + "/good.yaml"
            try """
            sagas:
              - type: order
                steps:
                  - name: reserve
                    command: {topic: stock, type: stock.reserve}
                    success: stock.reserved
                    failure: stock.unavailable
                    reply_topic: replies
                    compensation: none
                  - name: pay
                    command: {topic: payments, type: payment.process, data: {amount: "${data.total}"}}
                    success: payment.processed
                    failure: payment.failed
                    reply_topic: replies
            """.write(toFile: good, atomically: true, encoding: .utf8)
            let catalog = try SagaCatalog.load(files: [good])
            let order = try #require(catalog.saga("order"))
            #expect(order.steps.map(\.name) == ["reserve", "pay"] && order.steps[1].command.topic == "payments" && order.steps[0].replyTopic == "replies")

            let bad = dir + "/bad.yaml"
            try """
            sagas:
              - type: order
                steps:
                  - name: reserve
                    command: {topic: stock, type: stock.reserve}
                    success: stock.reserved
                    failure: stock.unavailable
                  - name: pay
                    command: {topic: payments, type: payment.process}
                    success: payment.processed
                    failure: payment.failed
            """.write(toFile: bad, atomically: true, encoding: .utf8)
            do {
                _ = try SagaCatalog.load(files: [bad])
                Issue.record("a step that later steps can fail after, without a compensation, was accepted")
            } catch {
                #expect("\(error)".contains("bad.yaml:4") && "\(error)".contains("compensation"), "\(error)")
            }
        }
    }
}
