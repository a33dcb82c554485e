import Foundation
import HTTPTypes
import Logging
import NIOCore

/// Runs one invocation of a function with the host's cross-cutting concerns:
/// the `Executing`/`Executed` log lines, metrics, and turning every failure into
/// the contract's error shape. Both hosting modes go through it.
public struct FunctionInvoker: Sendable {
    static let traceparent = HTTPField.Name(TraceContext.header)!
    public let catalog: FunctionCatalog
    public let metrics: FunctionMetrics
    let logger: Logger
    /// Set when spans are exported (`OTEL_EXPORTER_OTLP_ENDPOINT`).
    let exporter: SpanExporter?

    public init(catalog: FunctionCatalog, metrics: FunctionMetrics, logger: Logger, exporter: SpanExporter? = nil) {
        self.catalog = catalog
        self.metrics = metrics
        self.logger = logger
        self.exporter = exporter
    }

    /// Runs an HTTP function; never throws: any error becomes an error response.
    public func invokeHTTP(_ function: FunctionCatalog.Function, request: FunctionRequest) async -> FunctionResponse {
        guard case .http(let handler) = function.handler else {
            return .error(.internalError, requestID: request.requestID)
        }
        var request = request
        let trace = TraceContext.start(from: request.headers[Self.traceparent])
        request.logger[metadataKey: "function"] = .string(function.name)
        request.logger[metadataKey: "request_id"] = .string(request.requestID)
        request.logger[metadataKey: "trace_id"] = .string(trace.traceIDText)
        request.logger[metadataKey: "span_id"] = .string(trace.spanIDText)
        let logger = request.logger
        logger.debug(
            "Executing 'Functions.\(function.name)' (Reason='This function was programmatically called via the host APIs.', Id=\(request.requestID))")
        metrics.started(function.index)
        let started = ContinuousClock.now
        var response: FunctionResponse
        let startNanos = exporter == nil ? 0 : Tracing.nowNanos()
        let attributes = exporter == nil ? nil : InvocationAttributes()
        do {
            let invocation = request
            response = try await TraceContext.$current.withValue(trace) {
                if let exporter {
                    return try await SpanExporter.$current.withValue(exporter) {
                        try await InvocationAttributes.$current.withValue(attributes) { try await handler.handle(invocation) }
                    }
                }
                return try await handler.handle(invocation)
            }
        } catch let error as FunctionError {
            response = .error(error, requestID: request.requestID)
        } catch {
            logger.error(
                "function threw an unexpected error",
                metadata: ["error_type": .string(String(describing: type(of: error)))])
            response = .error(.internalError, requestID: request.requestID)
        }
        let elapsed = ContinuousClock.now - started
        let status = response.status.code
        let outcome: FunctionMetrics.Outcome = status >= 500 ? .serverError : status >= 400 ? .clientError : .success
        metrics.finished(function.index, outcome: outcome, nanoseconds: elapsed.nanoseconds)
        if let exporter {
            var fields: [(String, SpanValue)] = [
                ("faas.name", .string(function.name)), ("faas.trigger", .string("http")), ("http.request.method", .string(request.method.rawValue)),
                ("url.path", .string(request.path)), ("http.response.status_code", .int(Int64(status))), ("fnhost.request_id", .string(request.requestID)),
            ]
            if let route = function.spec.httpTrigger?.route.template { fields.append(("http.route", .string(route))) }
            fields += attributes?.all ?? []
            exporter.record(
                FinishedSpan(
                    context: trace, name: function.name, kind: .server, startNanos: startNanos, endNanos: Tracing.nowNanos(), attributes: fields,
                    failed: status >= 500))
        }
        logger.info(
            "Executed 'Functions.\(function.name)' (\(status >= 500 ? "Failed" : "Succeeded"), Id=\(request.requestID))",
            metadata: [
                "status": .stringConvertible(status),
                "outcome": .string(outcome.rawValue),
                "duration_ms": .stringConvertible(elapsed.milliseconds),
            ])
        return response
    }

    /// Runs a timer function; returns whether it succeeded.
    @discardableResult
    public func invokeTimer(_ function: FunctionCatalog.Function, timer: TimerInfo, reason: String) async -> Bool {
        guard case .timer(let handler) = function.handler else { return false }
        let invocationID = RequestIDs.generate()
        var logger = self.logger
        logger[metadataKey: "function"] = .string(function.name)
        logger[metadataKey: "invocation_id"] = .string(invocationID)
        logger.info(
            "Executing 'Functions.\(function.name)' (Reason='\(reason)', Id=\(invocationID))",
            metadata: ["is_past_due": .stringConvertible(timer.isPastDue)])
        metrics.started(function.index)
        let started = ContinuousClock.now
        var succeeded = true
        let trace = TraceContext.start(from: nil)
        logger[metadataKey: "trace_id"] = .string(trace.traceIDText)
        logger[metadataKey: "span_id"] = .string(trace.spanIDText)
        do {
            let context = TimerContext(functionName: function.name, invocationID: invocationID, logger: logger)
            try await TraceContext.$current.withValue(trace) {
                try await SpanExporter.$current.withValue(exporter) { try await handler.run(timer, context: context) }
            }
        } catch {
            succeeded = false
            logger.error(
                "timer function failed", metadata: ["error_type": .string(String(describing: type(of: error)))])
        }
        let elapsed = ContinuousClock.now - started
        metrics.finished(function.index, outcome: succeeded ? .success : .failure, nanoseconds: elapsed.nanoseconds)
        logger.info(
            "Executed 'Functions.\(function.name)' (\(succeeded ? "Succeeded" : "Failed"), Id=\(invocationID))",
            metadata: [
                "outcome": .string(succeeded ? "success" : "failure"),
                "duration_ms": .stringConvertible(elapsed.milliseconds),
            ])
        return succeeded
    }
}

extension Duration {
    var nanoseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1_000_000_000 + attoseconds / 1_000_000_000
    }

    /// Milliseconds with microsecond precision, for logs.
    var milliseconds: Double {
        Double(nanoseconds / 1000) / 1000
    }
}
