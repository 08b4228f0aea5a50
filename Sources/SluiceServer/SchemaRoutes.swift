import Foundation
import Hummingbird
import SluiceBroker
import SluiceSchema

/// The schema registry in the v1 API: list, show, register and remove schemas per event type and version, and each
/// type's settings (compatibility mode and upcasters).
extension APIRoutes {
    func registerSchemas(on router: Router<AgentRequestContext>) {
        router.get(RouterPath(HTTPPath.schemas)) { _, _ in try listSchemas() }
        router.get(RouterPath(HTTPPath.schemaType)) { _, context in
            let type = try context.parameters.require("type")
            let registry = try self.broker.schemas
            let settings = registry.settings(of: type)
            let versions = registry.versions(of: type)
            guard settings != nil || !versions.isEmpty else {
                throw BrokerError(.notFound, "no schemas or settings for \(type); list the types with GET \(HTTPPath.schemas)")
            }
            var body: [String: Any] = [
                "type": type, "versions": versions, "compatibility": registry.compatibility(of: type).rawValue,
                "upcasters": settings?.chains.upcasters.map(\.source.foundation) ?? [],
                "settings_source": settings.map { $0.fromDirectory ? "directory" : "api" } ?? "none",
            ]
            if let latest = versions.last { body["latest"] = latest }
            return jsonResponse(body)
        }
        router.put(RouterPath(HTTPPath.schemaType)) { request, context in
            let type = try context.parameters.require("type")
            let body = Array(buffer: try await request.body.collect(upTo: 1 << 20))
            let created = try self.broker.schemas.putSettings(type: type, bytes: body)
            self.logger.notice("schema type settings registered", metadata: ["event.type": .string(type), "created": .stringConvertible(created)])
            return jsonResponse(["type": type, "source": "api"], status: created ? .created : .ok)
        }
        router.delete(RouterPath(HTTPPath.schemaType)) { _, context in
            let type = try context.parameters.require("type")
            try self.broker.schemas.deleteSettings(type: type)
            self.logger.notice("schema type settings removed", metadata: ["event.type": .string(type)])
            return Response(status: .noContent)
        }
        router.get(RouterPath(HTTPPath.schema)) { _, context in
            let (type, version) = try Self.schemaKey(context)
            guard let entry = try self.broker.schemas.schema(type: type, version: version) else {
                throw BrokerError(.notFound, "no schema for \(type) version \(version); list them with GET \(HTTPPath.schemas)")
            }
            return rawJSONResponse(entry.source.bytes)
        }
        router.put(RouterPath(HTTPPath.schema)) { request, context in
            let (type, version) = try Self.schemaKey(context)
            let body = Array(buffer: try await request.body.collect(upTo: 1 << 20))
            let created = try self.broker.schemas.put(type: type, version: version, bytes: body)
            self.logger.notice("schema registered", metadata: ["event.type": .string(type), "schema.version": .string(version), "created": .stringConvertible(created)])
            return jsonResponse(["type": type, "version": version, "source": "api"], status: created ? .created : .ok)
        }
        router.delete(RouterPath(HTTPPath.schema)) { _, context in
            let (type, version) = try Self.schemaKey(context)
            try self.broker.schemas.delete(type: type, version: version)
            self.logger.notice("schema removed", metadata: ["event.type": .string(type), "schema.version": .string(version)])
            return Response(status: .noContent)
        }
    }

    static func schemaKey(_ context: AgentRequestContext) throws -> (String, String) {
        (try context.parameters.require("type"), try context.parameters.require("version"))
    }

    func listSchemas() throws -> Response {
        let registry = try broker.schemas
        let list = registry.types.map { type -> [String: Any] in
            let versions = registry.versions(of: type)
            return ["type": type, "latest": versions.last ?? "", "compatibility": registry.compatibility(of: type).rawValue,
                    "upcasters": registry.settings(of: type)?.chains.upcasters.map { "\($0.from) → \($0.to)" } ?? [],
                    "versions": versions.map { ["version": $0, "source": registry.schema(type: type, version: $0)?.fromDirectory == true ? "directory" : "api"] }]
        }
        return jsonResponse(["schemas": list])
    }
}
